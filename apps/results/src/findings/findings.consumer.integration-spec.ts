/**
 * The results app in-process on a real broker (KAFKA_BROKERS) and a real store (DATABASE_URL when
 * set, else embedded PGlite): findings events are stored in batches; a record that fails alone
 * (bad JSON, a schema violation, an event the database refuses) is dead-lettered alone while its
 * batch mates are stored; redeliveries never duplicate a row or a FHIR bundle.
 */
import type { INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { loadConfig } from '@thorax/config';
import { dlqTopic, encodeFindingsEvent, type FindingsEvent, HEADERS } from '@thorax/contracts';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { collect, countByKey, produce, testBrokers, testKafka } from '@thorax/testing';
import { AppModule } from '../app.module';
import { resultsConfigSchema } from '../config';
import { FINDINGS_QUERIES, type FindingsQueries, STUDY_QUERIES, type StudyQueries } from '../store/results-store.port';
import { errorEvent, okEvent } from '../testing/findings-events';

jest.setTimeout(180_000);

const RUN = `rc-${Date.now().toString(36)}`;
const TOPIC = `thorax.findings.v1.${RUN}`;
const FHIR_TOPIC = `thorax.fhir.v1.${RUN}`;
const GROUP = `thorax-results-${RUN}`;
const kafka = testKafka('thorax-results-consumer-test');
let app: INestApplication;

const STUDIES = Array.from({ length: 5 }, (_, s) => `1.2.826.0.1.3680043.8.498.${Date.now()}${s}`);
const VALID: FindingsEvent[] = STUDIES.flatMap((studyUid, s) =>
  Array.from({ length: 4 }, (_, i) => okEvent(`${RUN}-s${s}-i${i}`, { study: { studyUid, viewPosition: i % 2 ? 'AP' : 'PA' }, positives: i === 0 ? ['Mass'] : [] })),
);
const BAD = { json: `${RUN}-bad-json`, schema: `${RUN}-bad-schema`, nul: `${RUN}-bad-nul` };

/** Until the group has committed everything published to the topic so far. */
async function consumed(timeoutMs = 90_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const ends = await admin.fetchTopicOffsets(TOPIC);
        const [committed] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
        const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
        if (ends.every((e) => e.high === e.low || (at.get(e.partition) ?? -1n) >= BigInt(e.high))) return;
      } catch (error) {
        // A group coordinator still loading on a fresh broker answers NOT_COORDINATOR for a while.
        if (Date.now() > deadline) throw error;
      }
      if (Date.now() > deadline) throw new Error(`group ${GROUP} did not catch up with ${TOPIC}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
  }
}

/** Every valid event twice (a redelivery) and the three bad records, shuffled across partitions in one request. */
function records(): { key: string; value: Buffer; headers?: Record<string, string> }[] {
  const valid = VALID.flatMap((e) => [e, e]).map((e) => ({ key: e.id, value: encodeFindingsEvent(e) }));
  const schemaViolation = { ...okEvent(BAD.schema), status: 'maybe' };
  const bad = [
    { key: BAD.json, value: Buffer.from('{"schema": "thorax.findings.v1", "id": ') },
    { key: BAD.schema, value: Buffer.from(JSON.stringify(schemaViolation)) },
    // Valid against the schema, refused by jsonb (a \u0000 in a string): the store rejects it alone.
    { key: BAD.nul, value: encodeFindingsEvent(errorEvent(BAD.nul, { study: { studyUid: STUDIES[0] }, message: 'nul \u0000 inside' })) },
  ];
  const all = [...valid, ...bad];
  return all.map((_, i) => all[(i * 7) % all.length]!);
}

async function persistBatches(): Promise<number> {
  const json = await app.get(ThoraxMetrics).registry.getSingleMetricAsString('thorax_stage_duration_seconds');
  const line = json.split('\n').find((l) => l.startsWith('thorax_stage_duration_seconds_count') && l.includes('stage="persist"'));
  return Number(line?.slice(line.lastIndexOf(' ') + 1) ?? 0);
}

beforeAll(async () => {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [TOPIC, dlqTopic(TOPIC), FHIR_TOPIC].map((topic) => ({ topic, numPartitions: 3, replicationFactor: 1 })),
    });
  } finally {
    await admin.disconnect();
  }
  // Everything is published before the consumer starts, so it fetches it in few batches.
  await produce(kafka, TOPIC, records());
  const config = loadConfig(resultsConfigSchema, {
    KAFKA_BROKERS: testBrokers().join(','),
    TOPIC_FINDINGS: TOPIC,
    RESULTS_GROUP_ID: GROUP,
    RESULTS_FHIR_TOPIC: FHIR_TOPIC,
    RESULTS_PARTITIONS_CONCURRENCY: '3',
    RESULTS_DATA_DIR: 'memory://',
    ...(process.env['DATABASE_URL'] ? { DATABASE_URL: process.env['DATABASE_URL'] } : {}),
    // Below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a port.
    GRPC_PORT: '28352',
    LOG_LEVEL: 'silent',
  });
  const logger = createLogger({ service: 'results-test', version: 'test', level: 'silent' });
  app = await NestFactory.create(AppModule.forRoot(config, logger), { logger: false });
  app.enableShutdownHooks();
  await app.init();
});

afterAll(async () => {
  await app?.close();
});

describe('FindingsConsumer on a broker', () => {
  it('stores the valid events of a batch once each and dead-letters only the bad records, each alone', async () => {
    await consumed();
    const findings = app.get<FindingsQueries>(FINDINGS_QUERIES);
    for (const event of VALID) expect((await findings.get(event.id))?.event.id).toBe(event.id);
    for (const studyUid of STUDIES) {
      const page = await findings.list({ studyUid, limit: 50 });
      // Four images per study, one row each although every record came twice; the refused error event is not there.
      expect(page.items.map((r) => r.event.id).sort()).toEqual(VALID.filter((e) => e.study.studyUid === studyUid).map((e) => e.id).sort());
    }
    // 43 records in far fewer store transactions: they were stored in batches.
    const batches = await persistBatches();
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(20);

    const dlq = await collect(kafka, dlqTopic(TOPIC), (rs) => rs.length >= 3, 30_000);
    expect(countByKey(dlq, Object.values(BAD))).toEqual(new Map(Object.values(BAD).map((id) => [id, 1])));
    expect(dlq).toHaveLength(3);
    for (const record of dlq) expect(record.headers[HEADERS.errorCode]).toBe('INVALID_MESSAGE');
    expect(dlq.find((r) => r.key === BAD.nul)?.headers[HEADERS.errorMessage]).toMatch(/store rejected the event \(SQLSTATE 22P05\)/);
  });

  it('publishes each study version once on the FHIR topic, and a redelivered fetch publishes nothing new', async () => {
    const studies = app.get<StudyQueries>(STUDY_QUERIES);
    const final = new Map<string, number>();
    for (const studyUid of STUDIES) final.set(studyUid, (await studies.get({ studyUid }))?.version ?? -1);
    const isDone = (rs: { key: string | null; headers: Record<string, string> }[]) =>
      STUDIES.every((s) => rs.some((r) => r.key === s && Number(r.headers['thorax-fhir-version']) === final.get(s)));
    const before = await collect(kafka, FHIR_TOPIC, isDone, 30_000);
    const pairs = before.map((r) => `${r.key}@${r.headers['thorax-fhir-version']}`);
    expect(new Set(pairs).size).toBe(pairs.length);

    // The whole input again (a consumer restarted before its commit would see it so).
    await produce(kafka, TOPIC, records());
    await consumed();
    for (const studyUid of STUDIES) expect((await studies.get({ studyUid }))?.version).toBe(final.get(studyUid));
    const after = await collect(kafka, FHIR_TOPIC, isDone, 30_000);
    expect(after).toHaveLength(before.length);
    const dlq = await collect(kafka, dlqTopic(TOPIC), (rs) => rs.length >= 6, 30_000);
    expect(dlq).toHaveLength(6);
  });
});
