import { type FindingsEvent, ThoraxError } from '@thorax/contracts';
import type { Delivery, OutgoingRecord } from '@thorax/kafka';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import type { ResultsConfig } from '../config';
import { FhirTopicPublisher } from '../fhir/fhir-topic.publisher';
import type { FhirOutbox, FindingsWriter, StoredStudy, StoreOutcome } from '../store/results-store.port';
import { okEvent } from '../testing/findings-events';
import { FindingsConsumer, parseFindings } from './findings.consumer';
import { FindingsRecorder } from './findings-recorder.service';

describe('parseFindings', () => {
  it('returns a valid event', () => {
    const event = okEvent('img-1');
    expect(parseFindings(Buffer.from(JSON.stringify(event)))).toEqual(event);
  });

  it('turns anything else into a permanent INVALID_MESSAGE (dead-lettered at once)', () => {
    const bad = [Buffer.alloc(0), Buffer.from('not json'), Buffer.from(JSON.stringify({ ...okEvent('img-1'), status: 'maybe' }))];
    for (const value of bad) {
      let thrown: unknown;
      try {
        parseFindings(value);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ThoraxError);
      expect((thrown as ThoraxError).code).toBe('INVALID_MESSAGE');
      expect((thrown as ThoraxError).transient).toBe(false);
    }
  });
});

describe('FindingsRecorder', () => {
  async function latencyCount(metrics: ThoraxMetrics): Promise<number> {
    const json = await metrics.endToEndLatency.get();
    return json.values.find((v) => v.metricName === 'thorax_end_to_end_latency_seconds_count')?.value ?? 0;
  }

  it('observes end-to-end latency for new rows only, not for redeliveries', async () => {
    const outcomes: StoreOutcome[] = [
      { kind: 'stored', record: { seq: 1n, event: okEvent('img-1'), storedAt: new Date() }, study: null },
      { kind: 'duplicate' },
    ];
    const writer: FindingsWriter = { store: async () => outcomes };
    const metrics = new ThoraxMetrics('results-test');
    const recorder = new FindingsRecorder(writer, metrics);
    const event = okEvent('img-1', { receivedAt: new Date(Date.now() - 1500) });
    expect((await recorder.record([event, event])).map((o) => o.kind)).toEqual(['stored', 'duplicate']);
    expect(await latencyCount(metrics)).toBe(1);
    const sum = (await metrics.endToEndLatency.get()).values.find((v) => v.metricName?.endsWith('_sum'))!.value;
    expect(sum).toBeGreaterThanOrEqual(1.5);
    expect(sum).toBeLessThan(10);
  });

  it('classifies store failures: unavailable means redeliver, never dead-letter', async () => {
    const writer: FindingsWriter = {
      store: async () => {
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      },
    };
    const recorder = new FindingsRecorder(writer, new ThoraxMetrics('results-test'));
    await expect(recorder.record([okEvent('img-1')])).rejects.toMatchObject({ code: 'INTERNAL_ERROR', transient: true, redeliver: true });
  });
});

describe('FindingsConsumer.handleBatch', () => {
  const config = { RESULTS_GROUP_ID: 'g', TOPIC_FINDINGS: 't', RESULTS_PARTITIONS_CONCURRENCY: 1, RESULTS_BATCH_MAX_RECORDS: 500 } as ResultsConfig;
  const log = createLogger({ service: 'results-test', version: '0', level: 'silent' });
  const delivery = (message: FindingsEvent): Delivery<FindingsEvent> => ({
    message,
    forward: {},
    headers: {},
    position: { topic: 't', partition: 0, offset: '0', key: message.id, timestamp: 0 },
    log,
  });
  const stored = (event: FindingsEvent): StoreOutcome => ({ kind: 'stored', record: { seq: 1n, event, storedAt: new Date() }, study: null });

  /** An outbox that records which studies it was asked about and has each pending once. */
  class AskedOutbox implements FhirOutbox {
    asked: string[][] = [];
    async unpublished(studyUids: readonly string[]): Promise<StoredStudy[]> {
      this.asked.push([...studyUids]);
      return [];
    }
    marked = 0;
    async markPublished(): Promise<void> {
      this.marked += 1;
    }
    async settled(): Promise<string[]> {
      return [];
    }
  }

  function consumerOver(writer: FindingsWriter, topic: string | null, outbox: FhirOutbox = new AskedOutbox(), publish = async (records: OutgoingRecord[]): Promise<void> => void records) {
    const recorder = new FindingsRecorder(writer, new ThoraxMetrics('results-test'));
    const fhir = new FhirTopicPublisher({ topic }, {}, outbox, { publish });
    return new FindingsConsumer(config, { consume: jest.fn(), consumeBatches: jest.fn() }, recorder, fhir, log);
  }

  it('answers one result per record: a rejected event fails alone, its batch mates are done', async () => {
    const events = [okEvent('a', { study: { studyUid: 's1' } }), okEvent('b', { study: { studyUid: 's2' } }), okEvent('c', { study: { studyUid: 's3' } })];
    const writer: FindingsWriter = {
      store: async (batch) => [stored(batch[0]!), { kind: 'rejected', error: Object.assign(new Error('nul'), { code: '22P05' }) }, { kind: 'duplicate' }],
    };
    const outbox = new AskedOutbox();
    const results = await consumerOver(writer, 'thorax.fhir.v1', outbox).handleBatch(events.map(delivery));
    expect(results.map((r) => r.ok)).toEqual([true, false, true]);
    const failure = results[1];
    expect(failure && !failure.ok && failure.error).toMatchObject({ code: 'INVALID_MESSAGE', transient: false });
    // Bundles are looked up for the studies of the stored and the duplicate event, in one call.
    expect(outbox.asked).toEqual([['s1', 's3']]);
  });

  it('a store outage fails the whole batch as a redelivery (the port then retries each record)', async () => {
    const writer: FindingsWriter = {
      store: async () => {
        throw Object.assign(new Error('terminating connection'), { code: '57P01' });
      },
    };
    await expect(consumerOver(writer, null).handleBatch([delivery(okEvent('a'))])).rejects.toMatchObject({ code: 'INTERNAL_ERROR', redeliver: true });
  });

  it('a bundle Kafka does not acknowledge fails the batch, so its records are redelivered and publish it then', async () => {
    const writer: FindingsWriter = { store: async (batch) => batch.map(stored) };
    const pending: StoredStudy = {
      seq: 1n,
      version: 1,
      publishedVersion: 0,
      updatedAt: new Date(),
      result: { schema: 'thorax.study.v1', studyUid: 's1', accession: null, patientId: null, status: 'error', model: null, findings: [], positives: [], contributingImages: [], images: [], timing: { firstReceivedAt: '', lastCompletedAt: '' } },
    };
    const outbox: FhirOutbox = { unpublished: async () => [pending], markPublished: jest.fn(), settled: async () => [] };
    const consumer = consumerOver(writer, 'thorax.fhir.v1', outbox, async () => {
      throw new Error('broker unreachable');
    });
    await expect(consumer.handleBatch([delivery(okEvent('a', { study: { studyUid: 's1' } }))])).rejects.toMatchObject({ code: 'INTERNAL_ERROR', redeliver: true });
    expect(outbox.markPublished).not.toHaveBeenCalled();
  });
});
