import type { CommittedRecord, OutgoingRecord, TransactionalOutboxPublisher } from '@thorax/kafka';
import { createLogger, HealthRegistry, ThoraxMetrics } from '@thorax/observability';
import type { StudyResult } from '../domain/study-aggregate';
import type { FhirOutbox, FhirOutboxControl, OutboxOwnership, StoredStudy } from '../store/results-store.port';
import { FhirOutboxRelay } from './fhir-outbox.relay';
import { FhirTopicPublisher } from './fhir-topic.publisher';

const TOPIC = 'thorax.fhir.v1';
const log = createLogger({ service: 'results-test', version: '0', level: 'silent' });

function result(studyUid: string): StudyResult {
  return {
    schema: 'thorax.study.v1',
    studyUid,
    accession: null,
    patientId: null,
    status: 'error',
    model: null,
    findings: [],
    positives: [],
    contributingImages: [],
    images: [],
    timing: { firstReceivedAt: '2026-12-01T00:00:00.000Z', lastCompletedAt: '2026-12-01T00:00:01.000Z' },
  };
}

/** The store's outbox in memory: per study its version and the version marked published. */
class MemoryOutbox implements FhirOutbox, FhirOutboxControl {
  readonly rows = new Map<string, { version: number; published: number }>();
  owner: 'free' | 'taken' = 'free';
  owned = 0;
  released = 0;
  markFailures = 0;
  private loseSession: (reason: Error) => void = () => undefined;

  put(studyUid: string, version: number, published = 0): void {
    this.rows.set(studyUid, { version, published });
  }

  async unpublished(studyUids: readonly string[]): Promise<StoredStudy[]> {
    return studyUids.flatMap((uid) => {
      const row = this.rows.get(uid);
      if (!row || row.published >= row.version) return [];
      return [{ seq: 1n, version: row.version, publishedVersion: row.published, updatedAt: new Date(), result: result(uid) }];
    });
  }

  async markPublished(versions: readonly { studyUid: string; version: number }[]): Promise<void> {
    if (this.markFailures > 0) {
      this.markFailures -= 1;
      throw Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    }
    await this.markFound(versions);
  }

  async markFound(versions: readonly { studyUid: string; version: number }[]): Promise<number> {
    let moved = 0;
    for (const { studyUid, version } of versions) {
      const row = this.rows.get(studyUid);
      if (row && row.published < version && version <= row.version) {
        row.published = version;
        moved += 1;
      }
    }
    return moved;
  }

  async settled(_quietMs: number, limit: number): Promise<string[]> {
    return [...this.rows].filter(([, r]) => r.published < r.version).map(([uid]) => uid).slice(0, limit);
  }

  async oldestUnpublishedAt(): Promise<Date | null> {
    return [...this.rows.values()].some((r) => r.published < r.version) ? new Date(Date.now() - 1000) : null;
  }

  async own(): Promise<OutboxOwnership | null> {
    if (this.owner === 'taken') return null;
    this.owned += 1;
    return {
      lost: new Promise((resolve) => (this.loseSession = resolve)),
      release: async () => {
        this.released += 1;
      },
    };
  }

  /** The database session of the owner dies. */
  dropSession(): void {
    this.loseSession(new Error('Connection terminated unexpectedly'));
  }
}

/** A topic in memory with a transactional writer: records are visible once their publish commits. */
class MemoryTopic {
  readonly committed: { key: string; version: number }[] = [];
  fences = 0;
  failures: unknown[] = [];
  /** Keys whose bundles the topic refuses as too large. */
  readonly tooLarge = new Set<string>();

  writer(): TransactionalOutboxPublisher {
    const writer = {
      topic: TOPIC,
      spec: { topic: TOPIC, transactionalId: 'thorax-results-fhir' },
      fence: async () => {
        this.fences += 1;
      },
      close: async () => undefined,
      publish: async (records: readonly OutgoingRecord[]) => {
        const failure = this.failures.shift();
        if (failure) throw failure;
        if (records.some((r) => this.tooLarge.has(r.key))) throw Object.assign(new Error('message too large'), { type: 'MESSAGE_TOO_LARGE' });
        for (const r of records) this.committed.push({ key: r.key, version: Number(r.headers?.['thorax-fhir-version']) });
      },
      readCommitted: async (_since: number, onRecord: (r: CommittedRecord) => void) => {
        this.committed.forEach((r, i) => onRecord({ partition: 0, offset: String(i), key: r.key, headers: { 'thorax-fhir-version': String(r.version) } }));
        return { records: this.committed.length, partitions: 1 };
      },
    };
    return writer as unknown as TransactionalOutboxPublisher;
  }

  count(key: string, version: number): number {
    return this.committed.filter((r) => r.key === key && r.version === version).length;
  }
}

async function bundles(metrics: ThoraxMetrics, outcome: string): Promise<number> {
  const metric = metrics.registry.getSingleMetric('thorax_fhir_bundles_total');
  const values = (await metric?.get())?.values ?? [];
  return values.find((v) => v.labels['outcome'] === outcome)?.value ?? 0;
}

async function until(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('FhirOutboxRelay', () => {
  const relays: FhirOutboxRelay[] = [];
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((r) => r.beforeApplicationShutdown()));
  });

  function relayOver(outbox: MemoryOutbox, topic: MemoryTopic, delivery: 'exactly-once' | 'at-least-once' = 'exactly-once') {
    const metrics = new ThoraxMetrics('results-test');
    const health = new HealthRegistry();
    const fhir = new FhirTopicPublisher({ topic: TOPIC, settleMs: 0, delivery }, {}, outbox, { publish: async () => undefined });
    const relay = new FhirOutboxRelay(fhir, outbox, outbox, topic.writer(), metrics, health, log);
    relays.push(relay);
    relay.onApplicationBootstrap();
    return { relay, metrics, health };
  }

  const published = (outbox: MemoryOutbox) => [...outbox.rows.values()].every((r) => r.published === r.version);

  it('marks what an earlier owner committed but did not mark, and publishes only the rest', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.put('s1', 2);
    outbox.put('s2', 1);
    outbox.put('s3', 3, 1);
    // Committed by a killed owner before its mark: s1's version 2, and s3's superseded version 2.
    topic.committed.push({ key: 's1', version: 2 }, { key: 's3', version: 2 });
    const { metrics } = relayOver(outbox, topic);
    await until(() => published(outbox));
    expect(topic.fences).toBe(1);
    expect(topic.count('s1', 2)).toBe(1);
    expect(topic.count('s2', 1)).toBe(1);
    expect(topic.count('s3', 2)).toBe(1);
    expect(topic.count('s3', 3)).toBe(1);
    // s1's version 2 and s3's version 2 were marked from the topic; s2 and s3's version 3 sent.
    expect(await bundles(metrics, 'reconciled')).toBe(2);
    expect(await bundles(metrics, 'published')).toBe(2);
  });

  it('stands by while another process owns the outbox, without touching Kafka', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.owner = 'taken';
    outbox.put('s1', 1);
    const { relay } = relayOver(outbox, topic);
    await until(() => relay.status === 'standby');
    await new Promise((r) => setTimeout(r, 100));
    expect(topic.fences).toBe(0);
    expect(topic.committed).toEqual([]);
  });

  it('a mark that fails after the commit: ownership given up, the next round fences, reconciles and publishes nothing twice', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.put('s1', 1);
    outbox.put('s2', 4, 2);
    outbox.markFailures = 1;
    const { metrics } = relayOver(outbox, topic);
    await until(() => published(outbox));
    expect(topic.committed).toEqual([
      { key: 's1', version: 1 },
      { key: 's2', version: 4 },
    ]);
    expect(outbox.owned).toBe(2);
    expect(outbox.released).toBeGreaterThanOrEqual(1);
    expect(topic.fences).toBe(2);
    expect(await bundles(metrics, 'reconciled')).toBe(2);
  });

  it('a fenced producer gives up ownership; the bundles go out once it owns again', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.put('s1', 1);
    topic.failures.push(Object.assign(new Error('producer fenced'), { type: 'PRODUCER_FENCED' }));
    const { metrics } = relayOver(outbox, topic);
    await until(() => published(outbox));
    expect(topic.count('s1', 1)).toBe(1);
    expect(outbox.released).toBeGreaterThanOrEqual(1);
    expect(await bundles(metrics, 'aborted')).toBe(1);
  });

  it('a bundle the topic refuses is skipped alone, the others of its transaction go out; it goes again with a new version', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.put('s1', 1);
    outbox.put('big', 1);
    outbox.put('s2', 1);
    topic.tooLarge.add('big');
    const { metrics, relay } = relayOver(outbox, topic);
    await until(() => outbox.rows.get('s1')?.published === 1 && outbox.rows.get('s2')?.published === 1);
    await new Promise((r) => setTimeout(r, 600));
    expect(await bundles(metrics, 'refused')).toBe(1);
    expect(outbox.rows.get('big')?.published).toBe(0);
    expect(relay.status).toBe('publishing');
    // The study changes (a smaller bundle): the new version goes out.
    topic.tooLarge.clear();
    outbox.put('big', 2);
    await until(() => outbox.rows.get('big')?.published === 2);
    expect(topic.count('big', 2)).toBe(1);
    expect(topic.count('big', 1)).toBe(0);
  });

  it('the database session of the owner is lost: it stops publishing and takes ownership again', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    const { relay } = relayOver(outbox, topic);
    await until(() => relay.status === 'publishing');
    outbox.dropSession();
    await until(() => outbox.owned === 2 && relay.status === 'publishing', 10_000);
    expect(topic.fences).toBe(2);
  });

  it('does nothing under at-least-once delivery (StudySettler and the consumer publish there)', async () => {
    const outbox = new MemoryOutbox();
    const topic = new MemoryTopic();
    outbox.put('s1', 1);
    const { relay } = relayOver(outbox, topic, 'at-least-once');
    await new Promise((r) => setTimeout(r, 100));
    expect(relay.status).toBe('off');
    expect(outbox.owned).toBe(0);
  });
});
