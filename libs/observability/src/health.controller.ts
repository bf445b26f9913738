import { Controller, Get, Header, HttpStatus, Inject, Res } from '@nestjs/common';
import {
  HealthCheck,
  HealthCheckService,
  type HealthCheckResult,
  type HealthIndicatorFunction,
  HealthIndicatorService,
} from '@nestjs/terminus';
import type { Response } from 'express';
import { Public } from './api-auth';
import { HealthRegistry, type Probe } from './health';
import { LOGGER } from './tokens';
import type { Logger } from './logger';
import { ThoraxMetrics } from './metrics';

/**
 * GET /healthz (liveness), /readyz (readiness) and /metrics, the same on every service. The
 * probes run the checks components registered with the HealthRegistry through @nestjs/terminus:
 * 200 `{ status: "ok", info, error, details }` when all pass, 503 with the failing checks under
 * `error` otherwise, and 503 `shutting_down` once shutdown has begun. Open without a token, for
 * probes and scrapers.
 */
@Controller()
@Public()
export class HealthController {
  private lastReady: boolean | null = null;

  constructor(
    private readonly health: HealthRegistry,
    private readonly metrics: ThoraxMetrics,
    private readonly terminus: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  @Get('healthz')
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  healthz(): Promise<HealthCheckResult> {
    return this.terminus.check(this.indicators('liveness'));
  }

  @Get('readyz')
  @HealthCheck({ noCache: true, swaggerDocumentation: false })
  async readyz(): Promise<HealthCheckResult> {
    try {
      const result = await this.terminus.check(this.indicators('readiness'));
      this.noteReadiness(true, result);
      return result;
    } catch (error) {
      const body = (error as { getResponse?: () => unknown }).getResponse?.();
      this.noteReadiness(false, body as HealthCheckResult | undefined);
      throw error;
    }
  }

  @Get('metrics')
  @Header('Cache-Control', 'no-store')
  async metricsText(@Res() res: Response): Promise<void> {
    res.setHeader('Content-Type', this.metrics.registry.contentType);
    res.status(HttpStatus.OK).send(await this.metrics.registry.metrics());
  }

  private indicators(probe: Probe): HealthIndicatorFunction[] {
    return this.health.names(probe).map((name) => async () => {
      const result = await this.health.run(probe, name);
      const session = this.indicator.check(name);
      return result.ok ? session.up() : session.down({ reason: result.reason });
    });
  }

  /** One log line per readiness change, not one per probe. */
  private noteReadiness(ready: boolean, result: HealthCheckResult | undefined): void {
    if (this.lastReady === ready) return;
    this.lastReady = ready;
    if (ready) this.log.info('service ready');
    else this.log.warn({ failing: result?.error ?? {}, status: result?.status }, 'service not ready');
  }
}
