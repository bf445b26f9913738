import { Controller, Get, Header, HttpStatus, Res } from '@nestjs/common';
import type { Response } from 'express';
import { HealthRegistry, type HealthReport } from './health';
import { ThoraxMetrics } from './metrics';

/** GET /healthz, /readyz and /metrics, the same on every service. */
@Controller()
export class HealthController {
  constructor(
    private readonly health: HealthRegistry,
    private readonly metrics: ThoraxMetrics,
  ) {}

  @Get('healthz')
  async healthz(@Res() res: Response): Promise<void> {
    send(res, await this.health.live());
  }

  @Get('readyz')
  async readyz(@Res() res: Response): Promise<void> {
    send(res, await this.health.ready());
  }

  @Get('metrics')
  @Header('Cache-Control', 'no-store')
  async metricsText(@Res() res: Response): Promise<void> {
    res.setHeader('Content-Type', this.metrics.registry.contentType);
    res.status(HttpStatus.OK).send(await this.metrics.registry.metrics());
  }
}

function send(res: Response, report: HealthReport): void {
  res.status(report.status === 'ok' ? HttpStatus.OK : HttpStatus.SERVICE_UNAVAILABLE).json(report);
}
