import type { INestApplication } from '@nestjs/common';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import { errorEvent, okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { startResultsHttp } from '../testing/results-http-app';
import { studyBundle, studyResources } from './fhir-resources';

/**
 * Every kind of FHIR resource the service serves, validated against the official FHIR R4
 * structure definitions, value sets and invariants by the HAPI FHIR validator, offline
 * (tools/fhir-validator: jars from Maven Central, fetched and compiled on first use).
 *
 * Accepted: warnings that an offline validator cannot avoid (SNOMED CT and LOINC need a
 * terminology server), and one known error: AIAST, the "AI asserted" security label, is newer
 * than the copy of v3-ObservationValue inside the R4 (4.0.1) definitions (docs/fhir.md).
 * Anything else fails, and deliberately broken copies must fail, so the check can bite.
 */
jest.setTimeout(900_000);

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
const VALIDATOR = path.join(REPO_ROOT, 'tools', 'fhir-validator', 'fhir-validator.sh');
const run = promisify(execFile);

interface Issue {
  severity: 'fatal' | 'error' | 'warning' | 'information';
  location: string;
  message: string;
}
interface Verdict {
  file: string;
  valid: boolean;
  issues: Issue[];
}
type Json = Record<string, unknown>;

/** Issues accepted on resources the service serves; anything else is a failure. */
const ACCEPTED: { why: string; severity: Issue['severity'][]; message: RegExp }[] = [
  { why: 'AIAST is not in the R4 copy of v3-ObservationValue', severity: ['error'], message: /^Unknown code 'http:\/\/terminology\.hl7\.org\/CodeSystem\/v3-ObservationValue#AIAST'/ },
  { why: 'AIAST is not in the R4 security-labels value set (extensible)', severity: ['warning'], message: /v3-ObservationValue#AIAST\) was not found in the value set 'SecurityLabels'/ },
  { why: 'LOINC and SNOMED CT need a terminology server', severity: ['warning', 'information'], message: /CodeSystem is unknown and can't be validated: http:\/\/(loinc\.org|snomed\.info\/sct)/ },
  { why: 'no performer or effective time is known for an AI observation', severity: ['warning'], message: /^Best Practice Recommendation: In general, all observations should have (a performer|an effective\[x\])/ },
];

const fhirOptions = { accessionSystem: 'urn:oid:1.2.826.0.1.3680043.8.498.9', patientIdSystem: 'https://hospital.example.org/mrn' };
const accepted = (issue: Issue): boolean => ACCEPTED.some((a) => a.severity.includes(issue.severity) && a.message.test(issue.message));

let db: SqlClient;
let app: INestApplication;
let url: string;
let dir: string;
const served = new Map<string, Json>();
const broken = new Map<string, { resource: Json; expect: RegExp }>();
let verdicts: Map<string, Verdict>;

beforeAll(async () => {
  // Fetch the jars (first run only, ~150 MB from Maven Central) and compile the main class.
  await run('bash', [VALIDATOR, 'build'], { cwd: REPO_ROOT, timeout: 600_000, maxBuffer: 16 << 20 });

  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  const repo = sqlResultsStore(db);
  ({ app, url } = await startResultsHttp(repo, fhirOptions));
  const full = { studyUid: '1.2.826.0.1.3680043.8.498.501', accession: 'V-ACC-1', patientId: 'V-MRN-1' };
  await storeOne(repo, okEvent('v-pa', { study: { ...full, viewPosition: 'PA' }, positives: ['Pneumothorax', 'Hernia'] }));
  await storeOne(repo, okEvent('v-ll', { study: { ...full, viewPosition: 'LL' }, positives: ['Effusion'] }));
  await storeOne(repo, okEvent('v-bare', { study: { studyUid: 'export-study-17' }, positives: [] }));
  await storeOne(repo, errorEvent('v-failed', { study: { studyUid: '1.2.826.0.1.3680043.8.498.502', accession: 'V-ACC-2' } }));

  const fetchJson = async (p: string): Promise<Json> => (await (await fetch(p.startsWith('http') ? p : `${url}${p}`)).json()) as Json;
  served.set('metadata', await fetchJson('/fhir/metadata'));
  const searchset = await fetchJson('/fhir/DiagnosticReport?_include=DiagnosticReport:result');
  served.set('search-reports', searchset);
  served.set('search-studies', await fetchJson('/fhir/ImagingStudy'));
  served.set('not-found', await fetchJson('/fhir/DiagnosticReport/ffffffffffffffffffffffffffffffff'));
  // What the thorax.fhir.v1 topic carries for a study.
  const withPatient = await repo.studies.get({ studyUid: full.studyUid });
  served.set('topic-bundle', studyBundle(studyResources(withPatient!, fhirOptions), 'https://thorax.example.org/fhir'));
  for (const entry of (searchset['entry'] as Json[]) ?? []) {
    const resource = entry['resource'] as Json;
    const id = `${resource['resourceType']}/${resource['id']}`;
    served.set(id, await fetchJson(`/fhir/${id}`));
    if (resource['resourceType'] === 'DiagnosticReport') {
      const study = ((resource['imagingStudy'] as Json[])[0] as Json)['reference'] as string;
      served.set(study, await fetchJson(`/fhir/${study}`));
    }
    const device = (resource['device'] as Json | undefined)?.['reference'] as string | undefined;
    if (device) served.set(device, await fetchJson(`/fhir/${device}`));
  }

  // Negative controls: served resources with one thing broken each.
  const some = (type: string): Json => structuredClone([...served.values()].find((r) => r['resourceType'] === type)!);
  const report = some('DiagnosticReport');
  delete report['status'];
  broken.set('broken-report-no-status', { resource: report, expect: /DiagnosticReport\.status/ });
  const observation = some('Observation');
  observation['interpretation'] = [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation', code: 'MAYBE' }] }];
  (observation['valueQuantity'] as Json)['value'] = 'high';
  broken.set('broken-observation', { resource: observation, expect: /Observation\.value/ });
  const study = some('ImagingStudy');
  delete study['subject'];
  broken.set('broken-study-no-subject', { resource: study, expect: /ImagingStudy/ });

  dir = await mkdtemp(path.join(tmpdir(), 'thorax-fhir-'));
  const files: string[] = [];
  const write = async (name: string, resource: Json) => {
    const file = path.join(dir, `${name.replace(/[^A-Za-z0-9.-]/g, '_')}.json`);
    await writeFile(file, JSON.stringify(resource, null, 2));
    files.push(file);
    return file;
  };
  const fileOf = new Map<string, string>();
  for (const [name, resource] of served) fileOf.set(await write(name, resource), name);
  for (const [name, { resource }] of broken) fileOf.set(await write(name, resource), name);

  // One JVM for all files; exit status 1 is expected (the broken ones).
  const output = await run('bash', [VALIDATOR, 'validate', ...files], { cwd: REPO_ROOT, timeout: 300_000, maxBuffer: 64 << 20 }).then(
    (r) => r.stdout,
    (e: { code?: number; stdout?: string; stderr?: string }) => {
      if (e.code !== 1) throw new Error(`validator failed (exit ${e.code}): ${e.stderr}`);
      return e.stdout ?? '';
    },
  );
  verdicts = new Map();
  for (const line of output.split('\n').filter((l) => l.startsWith('{'))) {
    const verdict = JSON.parse(line) as Verdict;
    verdicts.set(fileOf.get(verdict.file) ?? verdict.file, verdict);
  }
});

afterAll(async () => {
  await app?.close();
  await db?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('FHIR resources against the official R4 definitions (HAPI validator, offline)', () => {
  it('validated every kind of resource the service serves', () => {
    const types = new Set([...served.values()].map((r) => r['resourceType']));
    expect([...types].sort()).toEqual(['Bundle', 'CapabilityStatement', 'Device', 'DiagnosticReport', 'ImagingStudy', 'Observation', 'OperationOutcome'].sort());
    // 3 reports, 2 × 14 observations, 3 studies, 1 device, metadata, 2 searches, 1 outcome, 1 topic bundle.
    expect(served.size).toBe(3 + 28 + 3 + 1 + 5);
    for (const name of served.keys()) expect({ name, verdict: verdicts.has(name) }).toEqual({ name, verdict: true });
  });

  it('finds nothing wrong with them beyond what an offline validator cannot decide', () => {
    const unexpected: string[] = [];
    for (const name of served.keys()) {
      for (const issue of verdicts.get(name)?.issues ?? []) {
        if (issue.severity !== 'information' && !accepted(issue)) unexpected.push(`${name}: ${issue.severity} at ${issue.location}: ${issue.message}`);
      }
    }
    expect(unexpected).toEqual([]);
    // The one accepted error is the AIAST label, on every AI-asserted resource and nowhere else.
    const aiastErrors = [...served.keys()].filter((n) => verdicts.get(n)?.issues.some((i) => i.severity === 'error'));
    expect(aiastErrors.every((n) => /^(DiagnosticReport|Observation)\/|^(search-reports|topic-bundle)$/.test(n))).toBe(true);
  });

  it('rejects deliberately broken copies, so the check can fail', () => {
    for (const [name, { expect: location }] of broken) {
      const verdict = verdicts.get(name);
      const errors = (verdict?.issues ?? []).filter((i) => (i.severity === 'error' || i.severity === 'fatal') && !accepted(i));
      expect({ name, valid: verdict?.valid, located: errors.some((e) => location.test(e.location) || location.test(e.message)) }).toEqual({ name, valid: false, located: true });
    }
  });
});
