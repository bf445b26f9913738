/**
 * The results service (built dist/) through its public surfaces only: findings events published
 * to thorax.findings.v1 with a plain Kafka client, read back over REST, FHIR R4 and gRPC.
 * At-least-once delivery means redeliveries: the same event 100 times must leave one stored
 * result and one DiagnosticReport whose version does not move. Uses DATABASE_URL when set (a
 * PostgreSQL server, as in CI), else the embedded store.
 */
import { credentials } from '@grpc/grpc-js';
import {
  CHESTXRAY14_LABELS,
  encodeFindingsEvent,
  errorFindingsEvent,
  type FindingsEvent,
  FindingsStatus,
  type GetStudyResponse,
  okFindingsEvent,
  ResultsServiceClient,
} from '@thorax/contracts';
import { collect, REPO_ROOT, produce, type RunningService, startBuiltService, testBrokers, testKafka, waitForService } from '@thorax/testing';
import path from 'node:path';

jest.setTimeout(240_000);

const RUN = `e2e-results-${Date.now().toString(36)}`;
// Away from `npm start` and from the pipeline e2e (base..base+10): results on base+20, gRPC on base+30.
const BASE = Number(process.env['THORAX_E2E_PORT_BASE'] ?? 18080);
const HTTP = `http://127.0.0.1:${BASE + 20}`;
const GRPC = `127.0.0.1:${BASE + 30}`;
const GROUP = `thorax-results-${RUN}`;
const TOPIC = 'thorax.findings.v1';
const FHIR_TOPIC = 'thorax.fhir.v1';
const STUDY = `1.2.826.0.1.3680043.8.498.${Date.now()}`;
const ACCESSION = `ACC-${RUN}`;
const kafka = testKafka('thorax-e2e-results');
let service: RunningService;
/** The study's version after the second test: 2 to 4, as its three images were stored together or not. */
let studyVersion = 0;

type Json = Record<string, unknown>;
const getJson = async (url: string): Promise<{ status: number; body: Json }> => {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Json };
};

function finding(id: string, viewPosition: string, probabilities: Partial<Record<string, number>>): FindingsEvent {
  const receivedAt = new Date();
  return okFindingsEvent({
    id,
    study: { studyUid: STUDY, accession: ACCESSION, patientId: `MRN-${RUN}`, viewPosition },
    receivedAt,
    completedAt: new Date(receivedAt.getTime() + 300),
    model: {
      name: 'thorax-tiny-cnn',
      version: '2026.11.30-1',
      sha256: 'b'.repeat(64),
      provenance: { data: 'synthetic', clinical: false, dataset: null, note: 'Demonstration model trained on synthetic images; not for clinical use.' },
    },
    labels: CHESTXRAY14_LABELS,
    thresholds: CHESTXRAY14_LABELS.map(() => 0.5),
    probabilities: CHESTXRAY14_LABELS.map((label) => probabilities[label] ?? 0.05),
  });
}

/** Until the service's consumer group has committed everything published to the topic so far. */
async function consumed(timeoutMs = 90_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ends = await admin.fetchTopicOffsets(TOPIC);
      const [committed] = await admin.fetchOffsets({ groupId: GROUP, topics: [TOPIC] });
      const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      // A partition nothing was ever written to has no committed offset (-1): nothing to wait for.
      if (ends.every((e) => e.high === e.low || (at.get(e.partition) ?? -1n) >= BigInt(e.high))) return;
      if (Date.now() > deadline) throw new Error(`results group ${GROUP} did not catch up with ${TOPIC}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await admin.disconnect();
  }
}

beforeAll(async () => {
  // The optional FHIR topic is not among the broker script's default topics: create it here.
  const admin = kafka.admin();
  await admin.connect();
  try {
    if (!(await admin.listTopics()).includes(FHIR_TOPIC)) {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic: FHIR_TOPIC, numPartitions: 3, replicationFactor: 1 }] });
    }
  } finally {
    await admin.disconnect();
  }
  service = startBuiltService(
    'results',
    {
      KAFKA_BROKERS: testBrokers().join(','),
      LOG_LEVEL: 'info',
      HTTP_PORT: String(BASE + 20),
      GRPC_PORT: String(BASE + 30),
      RESULTS_GROUP_ID: GROUP,
      RESULTS_DATA_DIR: 'memory://',
      RESULTS_FHIR_ACCESSION_SYSTEM: 'urn:oid:1.2.826.0.1.3680043.8.498.9',
      RESULTS_FHIR_TOPIC: FHIR_TOPIC,
      // Every study version goes out (no study grouping), so version 1 is seen once despite 100 redeliveries.
      RESULTS_STUDY_SETTLE_MS: '0',
    },
    path.join(REPO_ROOT, '.data', 'test-logs', RUN),
  );
  await waitForService(service, `${HTTP}/readyz`, 120_000);
});

afterAll(async () => {
  // The service drains and exits cleanly on SIGTERM.
  expect(await service.stop()).toBe(0);
});

describe('results through Kafka, REST, FHIR and gRPC', () => {
  it('redelivering one findings event 100 times leaves one row and one DiagnosticReport', async () => {
    const event = finding(`${RUN}-pa`, 'PA', { Pneumothorax: 0.88, Effusion: 0.3 });
    const value = encodeFindingsEvent(event);
    await produce(kafka, TOPIC, Array.from({ length: 100 }, () => ({ key: event.id, value })));
    await consumed();

    const rows = await getJson(`${HTTP}/v1/findings?studyUid=${STUDY}&limit=500`);
    expect((rows.body['results'] as Json[]).map((r) => r['id'])).toEqual([event.id]);

    const search = await getJson(`${HTTP}/fhir/DiagnosticReport?identifier=${ACCESSION}&_include=DiagnosticReport:result`);
    expect(search.status).toBe(200);
    expect(search.body['total']).toBe(1);
    const resources = ((search.body['entry'] as Json[]) ?? []).map((e) => e['resource'] as Json);
    const reports = resources.filter((r) => r['resourceType'] === 'DiagnosticReport');
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ status: 'preliminary', meta: { versionId: '1', security: [{ code: 'AIAST' }] } });
    expect(resources.filter((r) => r['resourceType'] === 'Observation')).toHaveLength(14);
    expect((await getJson(`${HTTP}/v1/studies/${STUDY}`)).body).toMatchObject({ version: 1, contributingImages: [event.id], positives: ['Pneumothorax'] });
  });

  it('aggregates the study as its images arrive, and redeliveries still change nothing', async () => {
    const ap = finding(`${RUN}-ap`, 'AP', { Effusion: 0.76 });
    const lateral = finding(`${RUN}-ll`, 'LL', { Hernia: 0.99 });
    const failed = errorFindingsEvent({
      id: `${RUN}-bad`,
      study: { studyUid: STUDY, accession: ACCESSION },
      receivedAt: new Date(),
      error: { code: 'CORRUPT_IMAGE', stage: 'preprocess', message: 'truncated PNG' },
    });
    const records = [ap, lateral, failed].flatMap((e) => Array.from({ length: 3 }, () => ({ key: e.id, value: encodeFindingsEvent(e) })));
    await produce(kafka, TOPIC, records);
    await consumed();

    const { body: study } = await getJson(`${HTTP}/v1/studies/${STUDY}`);
    // One version per committed change: the three images add 1 to 3 versions as results stored
    // them in one batch or in several; the redeliveries none.
    studyVersion = study['version'] as number;
    expect(studyVersion).toBeGreaterThanOrEqual(2);
    expect(studyVersion).toBeLessThanOrEqual(4);
    expect(study).toMatchObject({ status: 'ok', positives: ['Effusion', 'Pneumothorax'], contributingImages: [`${RUN}-ap`, `${RUN}-pa`] });
    expect((study['images'] as Json[]).map((i) => [i['id'], i['excluded']])).toEqual([
      [`${RUN}-ap`, null],
      [`${RUN}-bad`, 'error'],
      [`${RUN}-ll`, 'not-frontal'],
      [`${RUN}-pa`, null],
    ]);

    const search = await getJson(`${HTTP}/fhir/DiagnosticReport?identifier=${encodeURIComponent(`urn:oid:1.2.826.0.1.3680043.8.498.9|${ACCESSION}`)}`);
    const report = ((search.body['entry'] as Json[])[0]!['resource']) as Json;
    expect(search.body['total']).toBe(1);
    expect(report).toMatchObject({ meta: { versionId: String(studyVersion) }, code: { coding: [{ code: '36643-5' }] } });
    expect(report['conclusion']).toMatch(/Effusion \(0\.76\), Pneumothorax \(0\.88\)/);
    const imaging = await getJson(`${HTTP}/fhir/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${STUDY}`)}`);
    expect(((imaging.body['entry'] as Json[])[0]!['resource'] as Json)['numberOfInstances']).toBe(4);
  });

  it('publishes each study version once on thorax.fhir.v1 as a transaction bundle', async () => {
    const records = await collect(
      kafka,
      FHIR_TOPIC,
      (rs) => rs.some((r) => r.key === STUDY && r.headers['thorax-fhir-version'] === String(studyVersion)),
      60_000,
    );
    const versions = records.filter((r) => r.key === STUDY).map((r) => Number(r.headers['thorax-fhir-version']));
    // 100 redeliveries of the first image published version 1 once; later images may each publish.
    expect(versions.filter((v) => v === 1)).toHaveLength(1);
    expect(new Set(versions).size).toBe(versions.length);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(versions.at(-1)).toBe(studyVersion);
    const last = JSON.parse(records.filter((r) => r.key === STUDY).at(-1)!.value!.toString('utf8')) as Json;
    expect(last).toMatchObject({ resourceType: 'Bundle', type: 'transaction' });
    const report = (last['entry'] as { resource: Json; request: Json }[])[0]!;
    expect(report).toMatchObject({ resource: { resourceType: 'DiagnosticReport', meta: { versionId: String(studyVersion) } }, request: { method: 'PUT' } });
  });

  it('serves the study over gRPC', async () => {
    const client = new ResultsServiceClient(GRPC, credentials.createInsecure());
    try {
      const response = await new Promise<GetStudyResponse>((resolve, reject) =>
        client.getStudy({ studyUid: STUDY }, (error, value) => (error ? reject(error) : resolve(value))),
      );
      expect(response.study).toMatchObject({ studyUid: STUDY, status: FindingsStatus.FINDINGS_STATUS_OK, version: studyVersion, positives: ['Effusion', 'Pneumothorax'] });
    } finally {
      client.close();
    }
  });
});
