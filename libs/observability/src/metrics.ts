import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 30, 60];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * The minimum metric set of DESIGN.md, in one registry per process, with `service` on every
 * series. Label values are bounded: topics, stages, outcomes, labels, models — never an image id.
 */
export class ThoraxMetrics {
  readonly registry = new Registry();

  readonly messages: Counter<'topic' | 'outcome'>;
  readonly stageDuration: Histogram<'stage'>;
  readonly inferenceBatchSize: Histogram<'model' | 'version'>;
  readonly inferenceDuration: Histogram<'model' | 'version' | 'provider'>;
  readonly endToEndLatency: Histogram<never>;
  readonly consumerLag: Gauge<'topic' | 'partition' | 'group'>;
  readonly modelInfo: Gauge<'model' | 'version' | 'provider'>;
  readonly findings: Counter<'label' | 'positive'>;
  readonly errors: Counter<'stage' | 'code'>;

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ service });
    collectDefaultMetrics({ register: this.registry });
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
}
