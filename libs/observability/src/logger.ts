import type { LoggerService } from '@nestjs/common';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Field names (camelCase and DICOM keywords) that hold patient identifiers. An accession number
 * identifies the patient's examination at the hospital, so it counts as one.
 */
export const PATIENT_FIELDS = [
  'patientId',
  'patientName',
  'patientBirthDate',
  'birthDate',
  'otherPatientIds',
  'accession',
  'accessionNumber',
  'PatientID',
  'PatientName',
  'PatientBirthDate',
  'OtherPatientIDs',
  'AccessionNumber',
];

/** Record headers that may carry patient identifiers (the contract's and common PACS extras). */
export const PATIENT_HEADERS = [
  'thorax-patient-id',
  'thorax-patient-name',
  'thorax-accession',
  'patient-id',
  'patient-name',
];

/** Field names that hold credentials (SASL passwords, key passphrases); never logged. */
export const SECRET_FIELDS = ['password', 'passphrase', 'KAFKA_SASL_PASSWORD'];

/**
 * Paths that may carry patient identifiers, censored wherever they appear in a log object up to
 * three levels deep (`study.patientId`, `event.study.patientId`, `record.headers[…]`). Code logs
 * image ids, never names or patient ids; this is the net under that rule.
 */
export const REDACTED_PATHS = [
  ...PATIENT_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  ...PATIENT_HEADERS.flatMap((h) => [`headers["${h}"]`, `*.headers["${h}"]`]),
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  // Bearer tokens: code never logs request headers; this is the net under that rule.
  'headers.authorization',
  '*.headers.authorization',
  'token',
  '*.token',
];

/** A JSON logger to stdout (or `destination`, which tests use to read what would be written). */
export function createLogger(
  options: { service: string; version: string; level: string },
  destination?: pino.DestinationStream,
): Logger {
  const settings: pino.LoggerOptions = {
    level: options.level,
    base: { service: options.service, version: options.version },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };
  return destination ? pino(settings, destination) : pino(settings);
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
