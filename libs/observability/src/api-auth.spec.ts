import 'reflect-metadata';
import { Controller, Delete, Get, type INestApplication, Module, Post, Req } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TokenVerifier } from '@thorax/auth';
import type { Request } from 'express';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { AddressInfo } from 'node:net';
import { principalOf, Public, requiredAccess, RequireScope } from './api-auth';
import { createLogger } from './logger';
import { ObservabilityModule } from './observability.module';

@Controller('v1/reviews')
class ReviewsController {
  @Get()
  list(@Req() req: Request): { sub: string | null } {
    return { sub: principalOf(req)?.subject ?? null };
  }

  /** Review feedback: a mutating route, admin by default. */
  @Post()
  create(): { created: true } {
    return { created: true };
  }

  /** Explicitly lowered: any reader may post here. */
  @Post('acknowledgements')
  @RequireScope('read')
  acknowledge(): { acknowledged: true } {
    return { acknowledged: true };
  }

  @Get('audit')
  @RequireScope('admin')
  audit(): { audit: true } {
    return { audit: true };
  }

  @Delete()
  @Public()
  open(): { open: true } {
    return { open: true };
  }
}

async function start(auth: TokenVerifier | null): Promise<{ app: INestApplication; base: string }> {
  @Module({
    imports: [ObservabilityModule.forRoot({ service: 'results', version: '1', logLevel: 'silent', logger: createLogger({ service: 'results', version: '1', level: 'silent' }), auth })],
    controllers: [ReviewsController],
  })
  class TestModule {}
  const app = await NestFactory.create(TestModule, { logger: false, bodyParser: false });
  await app.listen(0, '127.0.0.1');
  return { app, base: `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}` };
}

describe('requiredAccess', () => {
  it('declared access wins; otherwise GET/HEAD need read and other methods admin', () => {
    expect(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'].map((m) => requiredAccess(undefined, m))).toEqual(['read', 'read', 'admin', 'admin', 'admin', 'admin']);
    expect(requiredAccess('read', 'POST')).toBe('read');
    expect(requiredAccess('admin', 'GET')).toBe('admin');
    expect(requiredAccess('public', 'DELETE')).toBe('public');
  });
});

describe('ApiAuthGuard with RequireScope and Public', () => {
  let secured: { app: INestApplication; base: string };
  let open: { app: INestApplication; base: string };
  let readToken: string;
  let adminToken: string;

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k', alg: 'ES256' };
    const sign = (scope: string) => new SignJWT({ scope }).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setSubject(`svc-${scope}`).setExpirationTime('5m').sign(privateKey);
    readToken = await sign('thorax.read');
    adminToken = await sign('thorax.admin');
    secured = await start(new TokenVerifier({ keys: { kind: 'local', jwks: { keys: [jwk] } }, readScope: 'thorax.read', adminScope: 'thorax.admin' }));
    open = await start(null);
  });

  afterAll(async () => {
    await secured?.app.close();
    await open?.app.close();
  });

  const call = async (base: string, method: string, path: string, token?: string) => {
    const res = await fetch(`${base}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, challenge: res.headers.get('www-authenticate'), body: (await res.json()) as Record<string, unknown> };
  };

  it('admin routes: 403 insufficient_scope for a read token, 200 for admin; admin implies read', async () => {
    const asReader = await call(secured.base, 'POST', '/v1/reviews', readToken);
    expect(asReader.status).toBe(403);
    expect(asReader.body).toEqual({ error: { code: 'PERMISSION_DENIED', message: 'the bearer token lacks the scope this operation needs' } });
    expect(asReader.challenge).toContain('error="insufficient_scope"');
    expect(asReader.challenge).toContain('scope="thorax.admin"');
    expect((await call(secured.base, 'POST', '/v1/reviews', adminToken)).status).toBe(201);
    expect((await call(secured.base, 'GET', '/v1/reviews/audit', readToken)).status).toBe(403);
    expect((await call(secured.base, 'GET', '/v1/reviews/audit', adminToken)).status).toBe(200);
    expect((await call(secured.base, 'GET', '/v1/reviews', adminToken)).body).toEqual({ sub: 'svc-thorax.admin' });
  });

  it('read routes, the lowered POST and public routes', async () => {
    const anonymous = await call(secured.base, 'GET', '/v1/reviews');
    expect(anonymous.status).toBe(401);
    expect(anonymous.challenge).toBe('Bearer realm="thorax"');
    expect(anonymous.body).toEqual({ error: { code: 'UNAUTHENTICATED', message: 'a bearer token is required' } });
    expect((await call(secured.base, 'GET', '/v1/reviews', readToken)).body).toEqual({ sub: 'svc-thorax.read' });
    expect((await call(secured.base, 'POST', '/v1/reviews/acknowledgements', readToken)).status).toBe(201);
    expect((await call(secured.base, 'DELETE', '/v1/reviews')).status).toBe(200);
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await fetch(`${secured.base}${path}`);
      expect([path, res.status]).toEqual([path, 200]);
    }
  });

  it('without a verifier every route is open', async () => {
    expect((await call(open.base, 'POST', '/v1/reviews')).status).toBe(201);
    expect((await call(open.base, 'GET', '/v1/reviews/audit')).status).toBe(200);
  });
});
