import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { HealthRegistry, HealthReport } from './health';

export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 30, 60];
export const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const QUEUE_BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/**
 * prom-client defaults whose names break the exposition-format conventions (gauges ending in
 * `_total`, rejected by `promtool check metrics`). The same data stays available, by handle or
 * resource type, as `nodejs_active_handles`, `nodejs_active_requests`, `nodejs_active_resources`.
 */
export const DROPPED_DEFAULT_METRICS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

/** How long one health evaluation is reused by the scrape-time gauges. */
const HEALTH_SNAPSHOT_MS = 1000;

/**
 * The metric set of docs/contract.md plus the platform signals (HTTP, gRPC, queues, readiness), in one
 * registry per process, with `service` on every series. Label values are bounded: topics, stages,
 * outcomes, route patterns, labels, models — never an image id, a patient or a raw URL
 * (`findIdLikeLabelValues` checks that).
 */
export class ThoraxMetrics {
  readonly registry = new Registry();

  // The minimum set of docs/contract.md.
  readonly messages: Counter<'topic' | 'outcome'>;
  readonly stageDuration: Histogram<'stage'>;
  readonly inferenceBatchSize: Histogram<'model' | 'version'>;
  readonly inferenceDuration: Histogram<'model' | 'version' | 'provider'>;
  readonly endToEndLatency: Histogram<never>;
  readonly consumerLag: Gauge<'topic' | 'partition' | 'group'>;
  readonly modelInfo: Gauge<'model' | 'version' | 'provider'>;
  readonly findings: Counter<'label' | 'positive'>;

  // Beyond the minimum set.
  readonly errors: Counter<'stage' | 'code'>;
  /** Records per batch a consumer fetched from one partition. */
  readonly consumerBatchSize: Histogram<'topic'>;
  /** Exactly-once consumers' commits by input topic and kind (transaction, offsets, abandoned). */
  readonly consumerCommits: Counter<'topic' | 'kind'>;
  /**
   * Items waiting in an in-process queue in front of a stage (e.g. the inference batcher);
   * `model` and `version` where the queue belongs to one model version, else left out.
   */
  readonly queueDepth: Gauge<'stage' | 'model' | 'version'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status_code'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  readonly grpcHandled: Counter<'grpc_service' | 'grpc_method' | 'grpc_type' | 'grpc_code'>;
  readonly grpcDuration: Histogram<'grpc_service' | 'grpc_method' | 'grpc_type'>;
  readonly grpcInFlight: Gauge<'grpc_service' | 'grpc_method' | 'grpc_type'>;
  readonly buildInfo: Gauge<'version'>;
  /** 1 while every readiness check passes, else 0 (evaluated at scrape time once bound). */
  readonly ready: Gauge<never>;
  readonly healthCheck: Gauge<'probe' | 'check'>;

  private health: HealthRegistry | null = null;
  private healthSnapshot: { at: number; reports: Promise<[HealthReport, HealthReport]> } | null = null;

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry });
    for (const name of DROPPED_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    const registers = [this.registry];
    this.messages = new Counter({
      name: 'thorax_messages_total',
      help: 'Records handled, by topic and outcome (ok, retried, dead_lettered).',
      labelNames: ['topic', 'outcome'],
      registers,
    });
    this.stageDuration = new Histogram({
      name: 'thorax_stage_duration_seconds',
      help: 'Time spent in one processing stage for one record.',
      labelNames: ['stage'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.inferenceBatchSize = new Histogram({
      name: 'thorax_inference_batch_size',
      help: 'Images per model execution.',
      labelNames: ['model', 'version'],
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.inferenceDuration = new Histogram({
      name: 'thorax_inference_duration_seconds',
      help: 'Duration of one model execution (one batch).',
      labelNames: ['model', 'version', 'provider'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.endToEndLatency = new Histogram({
      name: 'thorax_end_to_end_latency_seconds',
      help: 'From receipt by ingest to the findings being stored.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.consumerLag = new Gauge({
      name: 'thorax_consumer_lag',
      help: 'Records between the group committed offset and the partition end offset.',
      labelNames: ['topic', 'partition', 'group'],
      registers,
    });
    this.modelInfo = new Gauge({
      name: 'thorax_model_info',
      help: 'The active model; value is always 1.',
      labelNames: ['model', 'version', 'provider'],
      registers,
    });
    this.findings = new Counter({
      name: 'thorax_findings_total',
      help: 'Label decisions published, by label and decision (positive rate per label is a drift signal).',
      labelNames: ['label', 'positive'],
      registers,
    });
    this.errors = new Counter({
      name: 'thorax_errors_total',
      help: 'Records that ended in an error event, by stage and error code.',
      labelNames: ['stage', 'code'],
      registers,
    });
    this.consumerBatchSize = new Histogram({
      name: 'thorax_consumer_batch_size',
      help: 'Records in one batch fetched from one partition.',
      labelNames: ['topic'],
      buckets: QUEUE_BATCH_BUCKETS,
      registers,
    });
    this.consumerCommits = new Counter({
      name: 'thorax_consumer_commits_total',
      help:
        'Exactly-once consumers, per input topic: transaction (outputs and the input offset in one Kafka transaction), ' +
        'offsets (the offset alone in a plain group commit: nothing was published), abandoned (work given back, its inputs processed again).',
      labelNames: ['topic', 'kind'],
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'thorax_queue_depth',
      help: 'Items waiting in an in-process queue in front of a stage (e.g. the inference batcher, per model version).',
      labelNames: ['stage', 'model', 'version'],
      registers,
    });
    this.httpRequests = new Counter({
      name: 'thorax_http_requests_total',
      help: 'HTTP requests served, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'status_code'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'thorax_http_request_duration_seconds',
      help: 'HTTP request duration until the response is sent, by method and route pattern.',
      labelNames: ['method', 'route'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.grpcHandled = new Counter({
      name: 'thorax_grpc_server_handled_total',
      help: 'gRPC calls completed by the server, by method and status code.',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_type', 'grpc_code'],
      registers,
    });
    this.grpcDuration = new Histogram({
      name: 'thorax_grpc_server_handling_seconds',
      help: 'gRPC call duration from start to status (streams: the stream lifetime).',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_type'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.grpcInFlight = new Gauge({
      name: 'thorax_grpc_server_in_flight',
      help: 'gRPC calls started and not yet completed (open watch streams included).',
      labelNames: ['grpc_service', 'grpc_method', 'grpc_type'],
      registers,
    });
    this.buildInfo = new Gauge({
      name: 'thorax_build_info',
      help: 'The running service version; value is always 1.',
      labelNames: ['version'],
      registers,
    });
    const healthReports = () => this.healthReports();
    this.ready = new Gauge({
      name: 'thorax_ready',
      help: '1 while every readiness check of the service passes (what /readyz answers), else 0.',
      registers,
      async collect() {
        const reports = await healthReports();
        if (reports) this.set(reports[1].status === 'ok' ? 1 : 0);
      },
    });
    this.healthCheck = new Gauge({
      name: 'thorax_health_check_up',
      help: 'One liveness or readiness check: 1 passing, 0 failing.',
      labelNames: ['probe', 'check'],
      registers,
      async collect() {
        const reports = await healthReports();
        if (!reports) return;
        this.reset();
        for (const [probe, report] of [['liveness', reports[0]], ['readiness', reports[1]]] as const) {
          for (const [check, result] of Object.entries(report.checks)) this.set({ probe, check }, result.ok ? 1 : 0);
        }
      },
    });
  }

  /** Serves `thorax_ready` and `thorax_health_check_up` from the service's health checks. */
  bindHealth(health: HealthRegistry): void {
    this.health = health;
  }

  /** Observes the wall time of an async stage. */
  async time<T>(stage: string, work: () => Promise<T>): Promise<T> {
    const end = this.stageDuration.startTimer({ stage });
    try {
      return await work();
    } finally {
      end();
    }
  }

  /** Observes the end-to-end latency of a result from its receipt time; ignores bad stamps. */
  observeEndToEnd(receivedAt: Date | string, now: Date = new Date()): void {
    const started = typeof receivedAt === 'string' ? Date.parse(receivedAt) : receivedAt.getTime();
    const seconds = (now.getTime() - started) / 1000;
    if (Number.isFinite(seconds) && seconds >= 0) this.endToEndLatency.observe(seconds);
  }

  /** The metric names this registry exposes as sample names (histograms: _bucket, _sum, _count). */
  async sampleNames(): Promise<Set<string>> {
    const names = new Set<string>();
    for (const metric of await this.registry.getMetricsAsJSON()) {
      // prom-client's typings say an enum; at run time `type` is the exposition type name.
      const type = String(metric.type as unknown);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${metric.name}${s}`);
      else if (type === 'summary') for (const s of ['', '_sum', '_count']) names.add(`${metric.name}${s}`);
      else names.add(metric.name);
    }
    return names;
  }

  private healthReports(): Promise<[HealthReport, HealthReport]> | null {
    const health = this.health;
    if (!health) return null;
    const now = Date.now();
    if (!this.healthSnapshot || now - this.healthSnapshot.at > HEALTH_SNAPSHOT_MS) {
      this.healthSnapshot = { at: now, reports: Promise.all([health.live(), health.ready()]) };
    }
    return this.healthSnapshot.reports;
  }
}
