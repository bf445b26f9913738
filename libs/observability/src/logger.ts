import type { LoggerService } from '@nestjs/common';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths that may carry patient identifiers. They are censored wherever they appear in a log
 * object; code logs image ids, never names or patient ids.
 */
export const REDACTED_PATHS = [
  'patientId',
  'patientName',
  '*.patientId',
  '*.patientName',
  'study.patientId',
  'headers["thorax-patient-id"]',
  '*.headers["thorax-patient-id"]',
];

export function createLogger(options: { service: string; version: string; level: string }): Logger {
  return pino({
    level: options.level,
    base: { service: options.service, version: options.version },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  });
}

/** Routes NestJS's own log lines into the same structured JSON stream. */
export class PinoNestLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  log(message: unknown, context?: string): void {
    this.logger.info({ context }, String(message));
  }
  error(message: unknown, trace?: string, context?: string): void {
    this.logger.error({ context, trace }, String(message));
  }
  warn(message: unknown, context?: string): void {
    this.logger.warn({ context }, String(message));
  }
  debug(message: unknown, context?: string): void {
    this.logger.debug({ context }, String(message));
  }
  verbose(message: unknown, context?: string): void {
    this.logger.trace({ context }, String(message));
  }
}
