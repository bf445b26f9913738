import { Inject, Injectable } from '@nestjs/common';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import { Counter } from 'prom-client';

export type Edge = 'dimse' | 'dicomweb' | 'http' | 'grpc';
export type InstanceOutcome = 'stored' | 'failed';

/** One DICOM association, from its A-ASSOCIATE-RQ to the closed connection. */
export interface AssociationAudit {
  callingAeTitle: string;
  calledAeTitle: string;
  peer: string;
  startedAt: Date;
  endedAt: Date;
  instancesStored: number;
  instancesFailed: number;
  echoes: number;
  /** released, rejected (with the reason), aborted (by either side), timed-out, closed (connection dropped). */
  outcome: string;
  rejectReason?: string;
}

/** One HTTP request of an edge (STOW-RS). */
export interface RequestAudit {
  edge: Edge;
  route: string;
  client: string;
  /** The verified token's subject; null when auth is off or the token names none. */
  subject: string | null;
  startedAt: Date;
  endedAt: Date;
  instancesStored: number;
  instancesFailed: number;
  status: number;
  outcome: string;
}

const METRIC = 'thorax_edge_instances_total';

/**
 * The audit trail of the ingest edges: one `audit` log line per DICOM association and per edge
 * request (who, from where, when, how many instances, outcome), and
 * `thorax_edge_instances_total{edge,outcome}`. Identifiers only: AE titles, addresses, token
 * subjects, counts; never a patient attribute, and not even a study UID.
 */
@Injectable()
export class EdgeAudit {
  private readonly log: Logger;
  private readonly instances: Counter<'edge' | 'outcome'>;

  constructor(@Inject(LOGGER) logger: Logger, metrics: ThoraxMetrics) {
    this.log = logger.child({ name: 'audit' });
    const existing = metrics.registry.getSingleMetric(METRIC) as Counter<'edge' | 'outcome'> | undefined;
    this.instances =
      existing ??
      new Counter({
        name: METRIC,
        help: 'Instances received by an ingest edge (DIMSE, DICOMweb, HTTP, gRPC), by outcome: stored (handed to Kafka, acknowledged) or failed.',
        labelNames: ['edge', 'outcome'],
        registers: [metrics.registry],
      });
    for (const edge of ['dimse', 'dicomweb'] as const) for (const outcome of ['stored', 'failed'] as const) this.instances.inc({ edge, outcome }, 0);
  }

  instance(edge: Edge, outcome: InstanceOutcome): void {
    this.instances.inc({ edge, outcome });
  }

  association(a: AssociationAudit): void {
    this.log.info(
      {
        event: 'dicom.association',
        edge: 'dimse',
        callingAeTitle: a.callingAeTitle,
        calledAeTitle: a.calledAeTitle,
        peer: a.peer,
        startedAt: a.startedAt.toISOString(),
        endedAt: a.endedAt.toISOString(),
        durationMs: a.endedAt.getTime() - a.startedAt.getTime(),
        instancesStored: a.instancesStored,
        instancesFailed: a.instancesFailed,
        echoes: a.echoes,
        outcome: a.outcome,
        ...(a.rejectReason ? { rejectReason: a.rejectReason } : {}),
      },
      'DICOM association',
    );
  }

  request(r: RequestAudit): void {
    this.log.info(
      {
        event: 'edge.request',
        edge: r.edge,
        route: r.route,
        client: r.client,
        sub: r.subject,
        startedAt: r.startedAt.toISOString(),
        endedAt: r.endedAt.toISOString(),
        durationMs: r.endedAt.getTime() - r.startedAt.getTime(),
        instancesStored: r.instancesStored,
        instancesFailed: r.instancesFailed,
        status: r.status,
        outcome: r.outcome,
      },
      'edge request',
    );
  }
}
