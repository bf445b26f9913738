import type { INestApplication } from '@nestjs/common';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { CHESTXRAY14_LABELS } from '@thorax/contracts';
import { migrate } from './store/migrations';
import { PgliteSqlClient } from './store/pglite-sql-client';
import type { SqlClient } from './store/sql-client';
import { sqlResultsStore } from './store/sql-results-store';
import type { ResultsStore } from './store/results-store.port';
import { studyResourceId } from './domain/resource-ids';
import { errorEvent, okEvent } from './testing/findings-events';
import { storeOne } from './testing/store-one';
import { startResultsHttp } from './testing/results-http-app';

jest.setTimeout(60_000);

/**
 * The HTTP edge in-process over a real (embedded) store: REST studies and time filters, the
 * OpenAPI document against the routes and the bodies actually served, and FHIR read/search.
 */
const ACCESSION_SYSTEM = 'urn:oid:1.2.826.0.1.3680043.8.498.9';
const MRN_SYSTEM = 'https://hospital.example.org/mrn';
const STUDY = '1.2.826.0.1.3680043.8.498.4242';
const KEYED = 'pacs-export-study-7';

let db: SqlClient;
let repo: ResultsStore;
let app: INestApplication;
let url: string;

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = sqlResultsStore(db);
  ({ app, url } = await startResultsHttp(repo, { accessionSystem: ACCESSION_SYSTEM, patientIdSystem: MRN_SYSTEM }));

  const info = (viewPosition?: string) => ({ studyUid: STUDY, accession: 'ACC-4242', patientId: 'MRN-1', ...(viewPosition ? { viewPosition } : {}) });
  await storeOne(repo, okEvent('http-pa', { study: info('PA'), positives: [], probabilities: { Pneumothorax: 0.91, Effusion: 0.3 }, receivedAt: new Date('2026-11-30T08:00:00Z') }));
  await storeOne(repo, okEvent('http-ll', { study: info('LL'), positives: [], probabilities: { Pneumothorax: 0.2, Effusion: 0.95 }, receivedAt: new Date('2026-11-30T09:00:00Z') }));
  await storeOne(repo, errorEvent('http-bad', { study: info() }));
  await storeOne(repo, okEvent('http-keyed', { study: { studyUid: KEYED }, positives: [], receivedAt: new Date('2026-11-30T10:00:00Z') }));
  await storeOne(repo, errorEvent('http-failed', { study: { studyUid: '1.2.3.999', accession: 'ACC-FAIL' } }));
});

afterAll(async () => {
  await app?.close();
  await db?.close();
});

async function get(path: string): Promise<{ status: number; type: string; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${url}${path}`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: (await res.json()) as Record<string, unknown>, headers: res.headers };
}

type Json = Record<string, unknown>;
const entries = (bundle: Json): Json[] => ((bundle['entry'] as Json[] | undefined) ?? []);
const resources = (bundle: Json): Json[] => entries(bundle).map((e) => e['resource'] as Json);

describe('REST', () => {
  it('GET /v1/studies/{studyUid}: the aggregate over frontal images, 404 when unknown', async () => {
    const { status, body } = await get(`/v1/studies/${STUDY}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({ schema: 'thorax.study.v1', studyUid: STUDY, status: 'ok', positives: ['Pneumothorax'], contributingImages: ['http-pa'], version: 3 });
    const findings = body['findings'] as Json[];
    expect(findings.map((f) => f['label'])).toEqual([...CHESTXRAY14_LABELS]);
    // The lateral image's 0.95 Effusion does not count: only frontal images do.
    expect(findings.find((f) => f['label'] === 'Effusion')).toEqual({ label: 'Effusion', probability: 0.3, threshold: 0.5, positive: false, imageId: 'http-pa' });
    expect((body['images'] as Json[]).map((i) => [i['id'], i['excluded']])).toEqual([
      ['http-bad', 'error'],
      ['http-ll', 'not-frontal'],
      ['http-pa', null],
    ]);
    const missing = await get('/v1/studies/1.2.3.404');
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ error: { code: 'NOT_FOUND', message: expect.stringContaining('1.2.3.404') } });
  });

  it('GET /v1/findings filters by completion time (from inclusive, to exclusive)', async () => {
    const ids = async (q: string) => ((await get(`/v1/findings?${q}`)).body['results'] as Json[]).map((r) => r['id']);
    expect(await ids(`studyUid=${STUDY}&from=2026-11-30T08:30:00Z`)).toEqual(['http-bad', 'http-ll']);
    expect(await ids(`studyUid=${STUDY}&from=2026-11-30T08:30:00Z&to=2026-11-30T09:30:00Z`)).toEqual(['http-ll']);
    expect(await ids(`studyUid=${STUDY}&from=2026-11-30T07:00:00Z&to=2026-11-30T09:00:00.412Z`)).toEqual(['http-pa']);
    expect(await ids(`studyUid=${STUDY}&to=2026-11-30T10:00:00%2B01:00`)).toEqual(['http-pa']);
    for (const bad of ['from=yesterday', 'from=2026-11-30T10:00:00', 'from=2026-11-30T10:00:00Z&to=2026-11-30T09:00:00Z']) {
      const res = await get(`/v1/findings?${bad}`);
      expect({ bad, status: res.status, code: (res.body['error'] as Json)['code'] }).toEqual({ bad, status: 400, code: 'INVALID_ARGUMENT' });
    }
  });
});

describe('OpenAPI', () => {
  let doc: Json;
  let ajv: Ajv2020;
  beforeAll(async () => {
    doc = (await get('/openapi.json')).body;
    ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addSchema({ ...doc, $id: 'openapi' } as never);
  });
  const conforms = (schema: string, body: unknown): string => {
    const validate = ajv.getSchema(`openapi#/components/schemas/${schema}`);
    if (!validate) throw new Error(`no schema ${schema}`);
    return validate(body) ? 'valid' : ajv.errorsText(validate.errors);
  };

  it('documents every route the service serves', () => {
    expect(doc['openapi']).toBe('3.1.0');
    const router = (app.getHttpAdapter().getInstance() as { router: { stack: { route?: { path: string; methods: Record<string, boolean> } }[] } }).router;
    const served = router.stack
      // Middleware mounted on every path (HTTP metrics) shows up as catch-all routes: not API routes.
      .filter((layer) => layer.route && !layer.route.path.includes('*'))
      .flatMap((layer) => Object.keys(layer.route!.methods).map((m) => `${m.toUpperCase()} ${layer.route!.path.replace(/:(\w+)/g, '{$1}')}`));
    const documented = Object.entries(doc['paths'] as Record<string, Json>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(served.length).toBeGreaterThanOrEqual(8);
    expect(served.filter((route) => !documented.includes(route))).toEqual([]);
  });

  it('the bodies actually served match the documented schemas', async () => {
    expect(conforms('FindingsEvent', (await get('/v1/findings/http-pa')).body)).toBe('valid');
    expect(conforms('FindingsList', (await get(`/v1/findings?studyUid=${STUDY}`)).body)).toBe('valid');
    expect(conforms('StudyResult', (await get(`/v1/studies/${STUDY}`)).body)).toBe('valid');
    expect(conforms('StudyResult', (await get('/v1/studies/1.2.3.999')).body)).toBe('valid');
    expect(conforms('Error', (await get('/v1/findings/none')).body)).toBe('valid');
    // And the schemas bite: a study body without its version is refused.
    const { version: _version, ...withoutVersion } = (await get(`/v1/studies/${STUDY}`)).body;
    expect(conforms('StudyResult', withoutVersion)).toMatch(/version/);
  });
});

describe('FHIR R4', () => {
  const reportId = studyResourceId(STUDY);

  it('GET /fhir/metadata: a CapabilityStatement naming what is supported', async () => {
    const { status, type, body } = await get('/fhir/metadata');
    expect(status).toBe(200);
    expect(type).toMatch(/^application\/fhir\+json/);
    expect(body).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', kind: 'instance', status: 'active' });
    // Auth is off here: no rest.security (the auth test checks it when on).
    expect((body['rest'] as Json[])[0]?.['security']).toBeUndefined();
    const rest = (body['rest'] as Json[])[0]!['resource'] as Json[];
    expect(rest.map((r) => r['type'])).toEqual(['DiagnosticReport', 'ImagingStudy', 'Observation', 'Device']);
    expect(((rest[0]!['searchParam'] as Json[]).map((p) => p['name']))).toEqual(expect.arrayContaining(['identifier', 'subject:identifier', 'patient:identifier']));
  });

  it('DiagnosticReport per study: preliminary, RAD, LOINC, AI-asserted, imagingStudy, one Observation per label', async () => {
    const { status, body, headers } = await get(`/fhir/DiagnosticReport/${reportId}`);
    expect(status).toBe(200);
    expect(headers.get('etag')).toBe('W/"3"');
    expect(body).toMatchObject({
      resourceType: 'DiagnosticReport',
      id: reportId,
      meta: { versionId: '3', security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue', code: 'AIAST' }] },
      status: 'preliminary',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0074', code: 'RAD' }] }],
      // PA and LL: two views.
      code: { coding: [{ system: 'http://loinc.org', code: '36643-5' }] },
      identifier: [{ system: ACCESSION_SYSTEM, value: 'ACC-4242', type: { coding: [{ code: 'ACSN' }] } }],
      subject: { type: 'Patient', identifier: { system: MRN_SYSTEM, value: 'MRN-1' } },
      imagingStudy: [{ reference: `ImagingStudy/${reportId}` }],
      conclusionCode: [{ coding: [{ system: 'http://snomed.info/sct', code: '36118008' }], text: 'Pneumothorax' }],
    });
    expect(body['conclusion']).toMatch(/Pneumothorax \(0\.91\)/);
    const results = (body['result'] as Json[]).map((r) => r['reference'] as string);
    expect(results).toHaveLength(14);

    const pneumothorax = (await get(`/fhir/${results[7]}`)).body;
    expect(pneumothorax).toMatchObject({
      resourceType: 'Observation',
      status: 'preliminary',
      code: { coding: [{ system: 'http://snomed.info/sct', code: '36118008' }], text: 'Pneumothorax' },
      valueQuantity: { value: 0.91, system: 'http://unitsofmeasure.org', code: '1' },
      interpretation: [{ coding: [{ code: 'POS' }] }],
      derivedFrom: [{ reference: `ImagingStudy/${reportId}` }],
      meta: { security: [{ code: 'AIAST' }] },
    });
    const hernia = (await get(`/fhir/${results[13]}`)).body;
    expect(hernia).toMatchObject({ code: { text: 'Hernia' }, interpretation: [{ coding: [{ code: 'NEG' }] }] });
    expect(hernia['code']).not.toHaveProperty('coding');

    const device = await get(`/fhir/${(pneumothorax['device'] as Json)['reference']}`);
    expect(device.status).toBe(200);
    expect(device.body).toMatchObject({ resourceType: 'Device', deviceName: [{ name: 'chexnet-densenet121' }], version: [{ value: '2026.11.30-1' }, { value: 'a'.repeat(64) }] });
  });

  it('ImagingStudy stub keyed by the Study Instance UID, searchable as urn:dicom:uid', async () => {
    const { body } = await get(`/fhir/ImagingStudy/${reportId}`);
    expect(body).toMatchObject({ resourceType: 'ImagingStudy', status: 'available', numberOfInstances: 3 });
    expect(body['identifier']).toEqual(expect.arrayContaining([{ system: 'urn:dicom:uid', value: `urn:oid:${STUDY}` }]));
    const found = await get(`/fhir/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${STUDY}`)}`);
    expect(resources(found.body).map((r) => r['id'])).toEqual([reportId]);
    const keyed = await get(`/fhir/ImagingStudy?identifier=${KEYED}`);
    expect(resources(keyed.body).map((r) => r['identifier'])).toEqual([[{ value: KEYED }]]);
    // No patient id from the PACS: the required subject is marked unknown.
    expect(resources(keyed.body)[0]!['subject']).toMatchObject({ extension: [{ url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' }] });
  });

  it('searches DiagnosticReport by identifier (accession) and subject, with _include and paging', async () => {
    const ids = async (q: string) => resources((await get(`/fhir/DiagnosticReport?${q}`)).body).map((r) => r['id']);
    expect(await ids('identifier=ACC-4242')).toEqual([reportId]);
    expect(await ids(`identifier=${encodeURIComponent(`${ACCESSION_SYSTEM}|ACC-4242`)}`)).toEqual([reportId]);
    expect(await ids(`identifier=${encodeURIComponent('urn:oid:9.9|ACC-4242')}`)).toEqual([]);
    expect(await ids(`subject:identifier=${encodeURIComponent(`${MRN_SYSTEM}|MRN-1`)}`)).toEqual([reportId]);
    expect(await ids('patient:identifier=MRN-1')).toEqual([reportId]);
    expect(await ids('patient:identifier=MRN-2')).toEqual([]);

    const withResults = (await get('/fhir/DiagnosticReport?identifier=ACC-4242&_include=DiagnosticReport:result')).body;
    expect(withResults).toMatchObject({ resourceType: 'Bundle', type: 'searchset', total: 1 });
    expect(entries(withResults).map((e) => (e['search'] as Json)['mode'])).toEqual(['match', ...Array(14).fill('include')]);
    expect(entries(withResults)[0]!['fullUrl']).toBe(`${url}/fhir/DiagnosticReport/${reportId}`);

    // Paging through every report one at a time follows the next links and sees each study once.
    const seen: unknown[] = [];
    let next: string | undefined = `${url}/fhir/DiagnosticReport?_count=1`;
    while (next) {
      const page = (await (await fetch(next)).json()) as Json;
      seen.push(...resources(page).map((r) => r['id']));
      next = ((page['link'] as Json[]).find((l) => l['relation'] === 'next')?.['url'] as string | undefined);
    }
    expect(seen).toHaveLength(3);
    expect(new Set(seen).size).toBe(3);
  });

  it('a study no image of which could be analysed is a cancelled report without results', async () => {
    const report = resources((await get('/fhir/DiagnosticReport?identifier=ACC-FAIL')).body)[0]!;
    expect(report).toMatchObject({ status: 'cancelled', conclusion: expect.stringMatching(/No image of this study could be analysed/) });
    expect(report).not.toHaveProperty('result');
  });

  it('answers errors as OperationOutcome with the right status', async () => {
    const cases: [string, number, string][] = [
      ['/fhir/DiagnosticReport/ffffffffffffffffffffffffffffffff', 404, 'not-found'],
      ['/fhir/DiagnosticReport/bad_id!', 400, 'invalid'],
      ['/fhir/Patient/123', 404, 'not-supported'],
      ['/fhir/Observation?subject:identifier=MRN-1', 404, 'not-supported'],
      ['/fhir/DiagnosticReport?subject=Patient/123', 400, 'not-supported'],
      ['/fhir/DiagnosticReport?identifier=A&identifier=B', 400, 'invalid'],
      ['/fhir/DiagnosticReport?_count=0', 400, 'invalid'],
      ['/fhir/DiagnosticReport?_cursor=forged', 400, 'invalid'],
      ['/fhir/DiagnosticReport?_format=xml', 406, 'not-supported'],
    ];
    for (const [path, status, code] of cases) {
      const res = await get(path);
      expect({ path, status: res.status, type: res.type.split(';')[0], resourceType: res.body['resourceType'], code: (res.body['issue'] as Json[])[0]!['code'] }).toEqual({
        path,
        status,
        type: 'application/fhir+json',
        resourceType: 'OperationOutcome',
        code,
      });
    }
  });

  it('redelivering one event 100 times leaves one row and one DiagnosticReport, version unchanged', async () => {
    const study = '1.2.826.0.1.3680043.8.498.100';
    const event = okEvent('http-redelivered', { study: { studyUid: study, accession: 'ACC-100', patientId: 'MRN-100', viewPosition: 'PA' } });
    for (let i = 0; i < 100; i += 1) await storeOne(repo, event);
    const rows = await db.query<{ n: number | string }>('SELECT count(*) AS n FROM findings_results WHERE image_id = $1', ['http-redelivered']);
    expect(Number(rows[0]!.n)).toBe(1);
    const bundle = (await get('/fhir/DiagnosticReport?identifier=ACC-100&_include=DiagnosticReport:result')).body;
    expect(bundle['total']).toBe(1);
    const reports = resources(bundle).filter((r) => r['resourceType'] === 'DiagnosticReport');
    expect(reports).toHaveLength(1);
    expect(reports[0]!['meta']).toMatchObject({ versionId: '1' });
    expect(resources(bundle).filter((r) => r['resourceType'] === 'Observation')).toHaveLength(14);
  });
});
