import type { OutgoingRecord, Publisher } from '@thorax/kafka';
import { createLogger } from '@thorax/observability';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import type { ResultsStore } from '../store/results-store.port';
import { okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { FhirTopicPublisher } from './fhir-topic.publisher';
import { StudySettler } from './study-settler';

/** Study grouping over a real (embedded) store: bundles go out once a study is quiet. */
class RecordingPublisher implements Publisher {
  readonly records: OutgoingRecord[] = [];
  async publish(records: OutgoingRecord[]): Promise<void> {
    this.records.push(...records);
  }
}

const SETTLE_MS = 400;
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

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = createLogger({ service: 'results-test', version: 'test', level: 'silent' });

function settlerOver(kafka: Publisher, settleMs = SETTLE_MS): { settler: StudySettler; fhir: FhirTopicPublisher } {
  const fhir = new FhirTopicPublisher({ topic: 'thorax.fhir.v1', settleMs }, { baseUrl: 'https://thorax.example.org/fhir' }, repo.outbox, kafka);
  return { settler: new StudySettler(fhir, repo.outbox, log), fhir };
}

type Bundle = { entry: { resource: Record<string, unknown> }[] };
const bundleOf = (record: OutgoingRecord | undefined): Bundle => JSON.parse(record?.value.toString('utf8') ?? '{}') as Bundle;
const resource = (bundle: Bundle, type: string) => bundle.entry.find((e) => e.resource['resourceType'] === type)?.resource ?? {};

describe('StudySettler (RESULTS_STUDY_SETTLE_MS)', () => {
  it('publishes a study once, complete, after its instances stopped arriving; again after a late one', async () => {
    const kafka = new RecordingPublisher();
    const { settler, fhir } = settlerOver(kafka);
    expect(fhir.publishesOnStore).toBe(false);
    const study = '1.2.826.0.1.3680043.8.498.9101';
    const at = (id: string, view: string, positives: string[]) =>
      okEvent(id, { study: { studyUid: study, accession: 'G-1', viewPosition: view }, positives });

    // Three instances over three "associations", each within the settle time of the last.
    await storeOne(repo, at('group-pa', 'PA', ['Edema']));
    expect(await settler.publishSettled()).toBe(0);
    await sleep(SETTLE_MS / 2);
    await storeOne(repo, at('group-ap', 'AP', ['Mass']));
    expect(await settler.publishSettled()).toBe(0);
    await sleep(SETTLE_MS / 2);
    await storeOne(repo, at('group-ll', 'LL', ['Nodule']));
    expect(await settler.publishSettled()).toBe(0);
    expect(kafka.records).toHaveLength(0);

    await sleep(SETTLE_MS + 100);
    expect(await settler.publishSettled()).toBe(1);
    expect(await settler.publishSettled()).toBe(0);
    expect(kafka.records).toHaveLength(1);
    const first = bundleOf(kafka.records[0]);
    expect(kafka.records[0]?.headers?.['thorax-fhir-version']).toBe('3');
    // All three images are in the study; the lateral one is left out of the frontal aggregate.
    expect(resource(first, 'ImagingStudy')).toMatchObject({ numberOfInstances: 3 });
    expect(String((resource(first, 'ImagingStudy')['text'] as { div: string }).div)).toContain('3 image(s) received, 2 analysed');
    const positives = ((resource(first, 'DiagnosticReport')['conclusionCode'] ?? []) as { text?: string; coding?: { display?: string }[] }[]).map(
      (c) => c.text ?? c.coding?.[0]?.display,
    );
    expect(positives).toEqual(expect.arrayContaining(['Edema', 'Mass']));
    expect(positives).not.toContain('Nodule');

    // A late instance: a new version, published once the study is quiet again.
    await storeOne(repo, at('group-pa-2', 'PA', []));
    expect(await settler.publishSettled()).toBe(0);
    await sleep(SETTLE_MS + 100);
    expect(await settler.publishSettled()).toBe(1);
    expect(kafka.records.map((r) => r.headers?.['thorax-fhir-version'])).toEqual(['3', '4']);
    expect(resource(bundleOf(kafka.records[1]), 'ImagingStudy')).toMatchObject({ numberOfInstances: 4 });
  });

  it('publishes on its own timer once started, and not at all with a settle time of 0', async () => {
    const kafka = new RecordingPublisher();
    const { settler } = settlerOver(kafka);
    const study = '1.2.826.0.1.3680043.8.498.9102';
    await storeOne(repo, okEvent('timer-pa', { study: { studyUid: study, viewPosition: 'PA' } }));
    settler.onApplicationBootstrap();
    try {
      const deadline = Date.now() + 5000;
      while (!kafka.records.some((r) => r.key === study) && Date.now() < deadline) await sleep(50);
      expect(kafka.records.filter((r) => r.key === study)).toHaveLength(1);
    } finally {
      await settler.onApplicationShutdown();
    }
    const off = settlerOver(new RecordingPublisher(), 0);
    expect(off.fhir.publishesOnStore).toBe(true);
    off.settler.onApplicationBootstrap();
    await off.settler.onApplicationShutdown();
  });
});
