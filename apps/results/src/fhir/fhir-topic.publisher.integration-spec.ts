import { ThoraxError } from '@thorax/contracts';
import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { SqlFindingsRepository } from '../store/sql-findings.repository';
import { studyResourceId } from '../studies/resource-ids';
import { okEvent } from '../testing/findings-events';
import { FhirTopicPublisher } from './fhir-topic.publisher';

/** The FHIR topic outbox over a real (embedded) store, with a recording publisher. */
class RecordingPublisher implements Publisher {
  readonly records: OutgoingRecord[] = [];
  failures = 0;

  async publish(records: OutgoingRecord[]): Promise<void> {
    if (this.failures > 0) {
      this.failures -= 1;
      throw new Error('broker unreachable');
    }
    this.records.push(...records);
  }
}

let db: SqlClient;
let repo: SqlFindingsRepository;

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = new SqlFindingsRepository(db);
});

afterAll(async () => {
  await db?.close();
});

const publisherOver = (kafka: Publisher, topic: string | null = 'thorax.fhir.v1') =>
  new FhirTopicPublisher({ topic }, { baseUrl: 'https://thorax.example.org/fhir' }, repo, kafka);
type Json = Record<string, unknown>;

describe('FhirTopicPublisher', () => {
  it('publishes each study version once however often its events are redelivered', async () => {
    const kafka = new RecordingPublisher();
    const publisher = publisherOver(kafka);
    const study = '1.2.826.0.1.3680043.8.498.7001';
    const event = okEvent('topic-pa', { study: { studyUid: study, accession: 'T-1', viewPosition: 'PA' }, positives: ['Edema'] });
    for (let i = 0; i < 100; i += 1) {
      await repo.store(event);
      await publisher.publishStudy(study);
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

    await repo.store(okEvent('topic-ap', { study: { studyUid: study, accession: 'T-1', viewPosition: 'AP' }, positives: ['Mass'] }));
    expect(await publisher.publishStudy(study)).toBe(2);
    expect(await publisher.publishStudy(study)).toBeNull();
    expect(kafka.records.map((r) => r.headers?.['thorax-fhir-version'])).toEqual(['1', '2']);
  });

  it('a failed publish is not marked, so the redelivered record publishes it', async () => {
    const kafka = new RecordingPublisher();
    kafka.failures = 1;
    const publisher = publisherOver(kafka);
    const study = '1.2.826.0.1.3680043.8.498.7002';
    await repo.store(okEvent('topic-retry', { study: { studyUid: study, viewPosition: 'PA' } }));
    const error = await publisher.publishStudy(study).then(() => null, (e: unknown) => e);
    expect(error).toBeInstanceOf(ThoraxError);
    expect(error).toMatchObject({ code: 'INTERNAL_ERROR', transient: true, redeliver: true });
    expect((await repo.getStudy({ studyUid: study }))?.publishedVersion).toBe(0);
    expect(await publisher.publishStudy(study)).toBe(1);
    expect((await repo.getStudy({ studyUid: study }))?.publishedVersion).toBe(1);
    expect(kafka.records).toHaveLength(1);
  });

  it('publishes nothing without a topic or for an unknown study', async () => {
    const kafka = new RecordingPublisher();
    await repo.store(okEvent('topic-off', { study: { studyUid: '1.2.826.0.1.3680043.8.498.7003' } }));
    expect(publisherOver(kafka, null).enabled).toBe(false);
    expect(await publisherOver(kafka, null).publishStudy('1.2.826.0.1.3680043.8.498.7003')).toBeNull();
    expect(await publisherOver(kafka).publishStudy('1.2.404')).toBeNull();
    expect(kafka.records).toEqual([]);
  });
});
