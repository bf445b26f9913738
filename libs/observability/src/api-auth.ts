import {
  type CanActivate,
  type ExecutionContext,
  HttpException,
  Inject,
  Injectable,
  SetMetadata,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { type AccessLevel, type AuthFailure, type Principal, type TokenVerifier } from '@thorax/auth';
import type { Request, Response } from 'express';
import type { Logger } from './logger';
import { LOGGER } from './tokens';

/** The realm of every `WWW-Authenticate` challenge. */
export const AUTH_REALM = 'thorax';

/** The service's TokenVerifier, or null when API authentication is off. */
export const API_AUTH = Symbol('thorax.api-auth');

/** What a route needs: a level, or nothing (`public`). */
export type RouteAccess = AccessLevel | 'public';
const ACCESS = 'thorax:access';

/** Open to anyone, token or not: health, readiness, metrics, discovery documents. */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(ACCESS, 'public' satisfies RouteAccess);

/**
 * The scope level a route (or every route of a controller) needs; admin implies read. Without it,
 * safe methods (GET, HEAD) need read and every other method needs admin.
 */
export const RequireScope = (level: AccessLevel): MethodDecorator & ClassDecorator => SetMetadata(ACCESS, level);

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/** The access a route needs: its handler's decorator, else its controller's, else by method. */
export function requiredAccess(declared: RouteAccess | undefined, httpMethod: string): RouteAccess {
  return declared ?? (SAFE_METHODS.has(httpMethod.toUpperCase()) ? 'read' : 'admin');
}

/** The error code an API answers a refusal with, in the services' `{ error: { code, message } }` body. */
export type AuthErrorCode = 'UNAUTHENTICATED' | 'PERMISSION_DENIED' | 'UNAVAILABLE';

export function authErrorCode(failure: AuthFailure): AuthErrorCode {
  return failure.status === 401 ? 'UNAUTHENTICATED' : failure.status === 403 ? 'PERMISSION_DENIED' : 'UNAVAILABLE';
}

/**
 * A refused request: 401, 403 or 503 with `{ "error": { "code", "message" } }`. Exception filters
 * that render their own body (FHIR OperationOutcome) recognise it by class; the guard has already
 * set the `WWW-Authenticate` header.
 */
export class ApiAuthException extends HttpException {
  constructor(readonly failure: AuthFailure) {
    super({ error: { code: authErrorCode(failure), message: failure.message } }, failure.status);
  }
}

/** The verified caller of a request, once the guard let it through (absent when auth is off or the route is public). */
export function principalOf(req: Request): Principal | undefined {
  return (req as Request & { thoraxPrincipal?: Principal }).thoraxPrincipal;
}

/**
 * The global guard of every HTTP route (registered by ObservabilityModule): with a verifier it
 * requires a bearer token granting the route's level; without one it lets everything through.
 * Logs the subject and the outcome, never the token or its other claims, and never the URL (a
 * query may carry a patient identifier).
 */
@Injectable()
export class ApiAuthGuard implements CanActivate {
  constructor(
    @Inject(API_AUTH) private readonly verifier: TokenVerifier | null,
    private readonly reflector: Reflector,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (this.verifier === null || context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest<Request>();
    const declared = this.reflector.getAllAndOverride<RouteAccess | undefined>(ACCESS, [context.getHandler(), context.getClass()]);
    const access = requiredAccess(declared, req.method);
    if (access === 'public') return true;
    const result = await this.verifier.check(req.headers.authorization, access);
    const route = `${req.method} ${(req.route as { path?: string } | undefined)?.path ?? '(unmatched)'}`;
    if (result.ok) {
      (req as Request & { thoraxPrincipal?: Principal }).thoraxPrincipal = result.principal;
      this.log.debug({ sub: result.principal.subject, route, access, outcome: 'allowed' }, 'API request authorized');
      return true;
    }
    const { failure } = result;
    const fields = { sub: failure.details.subject ?? null, route, access, outcome: failure.code, reason: failure.details.reason ?? null };
    if (failure.code === 'keys_unavailable') this.log.warn({ ...fields, err: failure.details.cause }, 'API request refused: token signing keys unavailable');
    else this.log.info(fields, 'API request refused');
    const challenge = failure.challenge(AUTH_REALM);
    if (challenge !== null) context.switchToHttp().getResponse<Response>().setHeader('WWW-Authenticate', challenge);
    throw new ApiAuthException(failure);
  }
}
