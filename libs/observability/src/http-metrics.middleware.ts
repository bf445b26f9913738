import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { ThoraxMetrics } from './metrics';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Route label of a request that matched no route (404s, scanners): never the raw URL. */
export const UNMATCHED_ROUTE = 'unmatched';
/** Status label of a request whose client went away before the response was sent. */
export const CLIENT_CLOSED_STATUS = '499';

/**
 * Counts and times every HTTP request by method, route pattern (`/v1/findings/:id`, never the
 * URL itself) and status code. The route is read when the response is done, after the router
 * matched it, so exception filters' statuses and 404s are counted as the client saw them.
 */
@Injectable()
export class HttpMetricsMiddleware implements NestMiddleware {
  constructor(private readonly metrics: ThoraxMetrics) {}

  use(req: Request, res: Response, next: NextFunction): void {
    const started = process.hrtime.bigint();
    let done = false;
    const record = (status: string) => {
      if (done) return;
      done = true;
      const method = METHODS.has(req.method) ? req.method : 'OTHER';
      const route = routePattern(req);
      this.metrics.httpRequests.inc({ method, route, status_code: status });
      this.metrics.httpDuration.observe({ method, route }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    res.once('finish', () => record(String(res.statusCode)));
    res.once('close', () => record(CLIENT_CLOSED_STATUS));
    next();
  }
}

/** Catch-all patterns, such as the one Nest answers unknown paths with (`/{*path}`). */
const CATCH_ALL = /^\/?(\{\*\w+\}|\*|\(\.\*\))$/;

/**
 * The pattern of the route that handled the request (Express sets req.route when one matched);
 * `unmatched` when none did or only a catch-all (Nest's 404 handler) did.
 */
export function routePattern(req: Pick<Request, 'baseUrl'> & { route?: { path?: unknown } }): string {
  const path = req.route?.path;
  if (typeof path !== 'string' || CATCH_ALL.test(path)) return UNMATCHED_ROUTE;
  return `${req.baseUrl ?? ''}${path}` || '/';
}
