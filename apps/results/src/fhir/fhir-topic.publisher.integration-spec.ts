import { ThoraxError } from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import type { ResultsStore } from '../store/results-store.port';
import { studyResourceId } from '../domain/resource-ids';
import { okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { FhirTopicPublisher } from './fhir-topic.publisher';

/** The FHIR topic outbox over a real (embedded) store, with a recording publisher. */
class RecordingPublisher implements Publisher {
  readonly records: OutgoingRecord[] = [];
  failures = 0;
  requests = 0;

  async publish(records: OutgoingRecord[]): Promise<void> {
    this.requests += 1;
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('broker unreachable');
    }
    this.records.push(...records);
  }
}

let db: SqlClient;
let repo: ResultsStore;

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = sqlResultsStore(db);
});

afterAll(async () => {
  await db?.close();
});

const publisherOver = (kafka: Publisher, topic: string | null = 'thorax.fhir.v1') =>
  new FhirTopicPublisher({ topic }, { baseUrl: 'https://thorax.example.org/fhir' }, repo.outbox, kafka);
/** The version published for one study, or null when nothing went out. */
const publishOne = async (publisher: FhirTopicPublisher, study: string): Promise<number | null> =>
  (await publisher.publishStudies([study]))[0]?.version ?? null;
type Json = Record<string, unknown>;

describe('FhirTopicPublisher', () => {
  it('publishes each study version once however often its events are redelivered', async () => {
    const kafka = new RecordingPublisher();
    const publisher = publisherOver(kafka);
    const study = '1.2.826.0.1.3680043.8.498.7001';
    const event = okEvent('topic-pa', { study: { studyUid: study, accession: 'T-1', viewPosition: 'PA' }, positives: ['Edema'] });
    for (let i = 0; i < 100; i += 1) {
      await storeOne(repo, event);
      await publishOne(publisher, study);
    }
    expect(kafka.records).toHaveLength(1);
    const [record] = kafka.records;
    expect(record).toMatchObject({ topic: 'thorax.fhir.v1', key: study, headers: { 'content-type': 'application/fhir+json', 'thorax-fhir-version': '1' } });
    const bundle = JSON.parse(record!.value.toString('utf8')) as Json;
    expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'transaction' });
    const entries = bundle['entry'] as { resource: Json; request: { method: string; url: string }; fullUrl: string }[];
    expect(entries.map((e) => e.resource['resourceType'])).toEqual(['DiagnosticReport', ...Array(14).fill('Observation'), 'ImagingStudy', 'Device']);
    expect(entries[0]).toMatchObject({
      request: { method: 'PUT', url: `DiagnosticReport/${studyResourceId(study)}` },
      fullUrl: `https://thorax.example.org/fhir/DiagnosticReport/${studyResourceId(study)}`,
      resource: { meta: { versionId: '1' } },
    });

    await storeOne(repo, okEvent('topic-ap', { study: { studyUid: study, accession: 'T-1', viewPosition: 'AP' }, positives: ['Mass'] }));
    expect(await publishOne(publisher, study)).toBe(2);
    expect(await publishOne(publisher, study)).toBeNull();
    expect(kafka.records.map((r) => r.headers?.['thorax-fhir-version'])).toEqual(['1', '2']);
  });

  it('a failed publish is not marked, so the redelivered record publishes it', async () => {
    const kafka = new RecordingPublisher();
    kafka.failures = 1;
    const publisher = publisherOver(kafka);
    const study = '1.2.826.0.1.3680043.8.498.7002';
    await storeOne(repo, okEvent('topic-retry', { study: { studyUid: study, viewPosition: 'PA' } }));
    const error = await publishOne(publisher, study).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(ThoraxError);
    expect(error).toMatchObject({ code: 'INTERNAL_ERROR', transient: true, redeliver: true });
    expect((await repo.studies.get({ studyUid: study }))?.publishedVersion).toBe(0);
    expect(await publishOne(publisher, study)).toBe(1);
    expect((await repo.studies.get({ studyUid: study }))?.publishedVersion).toBe(1);
    expect(kafka.records).toHaveLength(1);
  });

  it('publishes the studies of a batch in one request, each current version once', async () => {
    const kafka = new RecordingPublisher();
    const publisher = publisherOver(kafka);
    const studies = ['1.2.826.0.1.3680043.8.498.7101', '1.2.826.0.1.3680043.8.498.7102', '1.2.826.0.1.3680043.8.498.7103'];
    await repo.writer.store(studies.map((studyUid, i) => okEvent(`topic-batch-${i}`, { study: { studyUid, viewPosition: 'PA' } })));
    const published = await publisher.publishStudies([...studies, studies[0]!, '1.2.404']);
    expect(published).toEqual(studies.map((studyUid) => ({ studyUid, version: 1 })));
    expect(kafka.requests).toBe(1);
    expect(kafka.records.map((r) => r.key)).toEqual(studies);
    expect(await publisher.publishStudies(studies)).toEqual([]);
    expect(kafka.requests).toBe(1);
  });

  it('publishes nothing without a topic or for an unknown study', async () => {
    const kafka = new RecordingPublisher();
    await storeOne(repo, okEvent('topic-off', { study: { studyUid: '1.2.826.0.1.3680043.8.498.7003' } }));
    expect(publisherOver(kafka, null).enabled).toBe(false);
    expect(await publishOne(publisherOver(kafka, null), '1.2.826.0.1.3680043.8.498.7003')).toBeNull();
    expect(await publishOne(publisherOver(kafka), '1.2.404')).toBeNull();
    expect(kafka.records).toEqual([]);
  });
});
