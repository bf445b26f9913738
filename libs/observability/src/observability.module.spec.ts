import 'reflect-metadata';
import { Controller, Get, type INestApplication, Module, NotFoundException, Param } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { AddressInfo } from 'node:net';
import { HealthRegistry, healthy, unhealthy } from './health';
import { findIdLikeLabelValues, parseSamples } from '@thorax/testing';
import { createLogger } from './logger';
import { ObservabilityModule } from './observability.module';

const SOP_UID = '1.2.826.0.1.3680043.8.498.12345678901234567890';

@Controller('v1/things')
class ThingsController {
  @Get(':id')
  get(@Param('id') id: string): { id: string } {
    if (id.startsWith('missing')) throw new NotFoundException(`no ${id}`);
    return { id };
  }
}

describe('ObservabilityModule in a Nest app', () => {
  let app: INestApplication;
  let base: string;
  let modelLoaded = false;

  beforeAll(async () => {
    @Module({
      imports: [ObservabilityModule.forRoot({ service: 'results', version: '9.8.7', logLevel: 'silent', logger: createLogger({ service: 'results', version: '9.8.7', level: 'silent' }) })],
      controllers: [ThingsController],
    })
    class TestModule {}
    app = await NestFactory.create(TestModule, { logger: false, bodyParser: false });
    app.get(HealthRegistry).addLiveness('loop', () => healthy);
    app.get(HealthRegistry).addReadiness('model', () => (modelLoaded ? healthy : unhealthy('model not loaded yet')));
    await app.listen(0, '127.0.0.1');
    base = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await app.close();
  });

  it('answers /healthz and /readyz through terminus: 503 naming the failing check, then 200', async () => {
    const live = await fetch(`${base}/healthz`);
    expect(live.status).toBe(200);
    expect(await live.json()).toMatchObject({ status: 'ok', details: { loop: { status: 'up' } } });
    expect(live.headers.get('cache-control')).toContain('no-store');

    const notReady = await fetch(`${base}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({
      status: 'error',
      error: { model: { status: 'down', reason: 'model not loaded yet' } },
    });

    modelLoaded = true;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ok', info: { model: { status: 'up' } } });
  });

  it('counts HTTP requests by route pattern and status, never by raw URL', async () => {
    expect((await fetch(`${base}/v1/things/${SOP_UID}`)).status).toBe(200);
    expect((await fetch(`${base}/v1/things/missing-${SOP_UID}`)).status).toBe(404);
    expect((await fetch(`${base}/no/such/${SOP_UID}?patient=DOE`)).status).toBe(404);
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    const requests = parseSamples(text).filter((s) => s.name === 'thorax_http_requests_total');
    const count = (route: string, status: string) =>
      requests.find((s) => s.labels['route'] === route && s.labels['status_code'] === status && s.labels['method'] === 'GET')?.value;
    expect(count('/v1/things/:id', '200')).toBe('1');
    expect(count('/v1/things/:id', '404')).toBe('1');
    expect(count('unmatched', '404')).toBe('1');
    expect(count('/readyz', '503')).toBe('1');
    expect(count('/readyz', '200')).toBe('1');
    expect(text).toMatch(/thorax_http_request_duration_seconds_count\{[^}]*route="\/v1\/things\/:id"[^}]*\} 2/);
    expect(text).not.toContain(SOP_UID);
    expect(findIdLikeLabelValues(text)).toEqual([]);
  });

  it('serves build info, readiness gauges and service on every series', async () => {
    const samples = parseSamples(await (await fetch(`${base}/metrics`)).text());
    expect(samples.find((s) => s.name === 'thorax_build_info')).toMatchObject({ labels: { service: 'results', version: '9.8.7' }, value: '1' });
    expect(samples.find((s) => s.name === 'thorax_ready')?.value).toBe('1');
    expect(samples.every((s) => s.labels['service'] === 'results')).toBe(true);
  });
});
