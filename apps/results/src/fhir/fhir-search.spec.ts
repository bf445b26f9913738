import { FhirError } from './fhir-error';
import type { FhirMappingOptions } from './fhir-resources';
import { DEFAULT_COUNT, MAX_COUNT, parseSearch, parseToken } from './fhir-search';

const systems = { accessionSystem: 'urn:oid:1.2.3', patientIdSystem: 'https://h.example.org/mrn' };

function fails(work: () => unknown): { status: number; issue: string } | null {
  try {
    work();
    return null;
  } catch (error) {
    if (error instanceof FhirError) return { status: error.status, issue: error.issue };
    throw error;
  }
}

describe('parseToken', () => {
  it('splits system and code at the first bar', () => {
    expect(parseToken('ACC-1')).toEqual({ code: 'ACC-1' });
    expect(parseToken('|ACC-1')).toEqual({ system: '', code: 'ACC-1' });
    expect(parseToken('urn:dicom:uid|urn:oid:1.2.3')).toEqual({ system: 'urn:dicom:uid', code: 'urn:oid:1.2.3' });
  });
});

describe('parseSearch', () => {
  it('DiagnosticReport identifier is the accession, matched by system', () => {
    expect(parseSearch('DiagnosticReport', { identifier: 'A1' }, systems).query).toEqual({ limit: DEFAULT_COUNT, accession: 'A1' });
    expect(parseSearch('DiagnosticReport', { identifier: 'urn:oid:1.2.3|A1' }, systems).query).toMatchObject({ accession: 'A1' });
    expect(parseSearch('DiagnosticReport', { identifier: 'urn:oid:9|A1' }, systems).query).toBeNull();
    expect(parseSearch('DiagnosticReport', { identifier: '|A1' }, systems).query).toBeNull();
    expect(parseSearch('DiagnosticReport', { identifier: '|A1' }, {}).query).toMatchObject({ accession: 'A1' });
  });

  it('ImagingStudy identifier: Study Instance UID, study key or accession', () => {
    const q = (identifier: string, options: FhirMappingOptions = systems) => parseSearch('ImagingStudy', { identifier }, options).query;
    expect(q('urn:dicom:uid|urn:oid:1.2.840.1')).toMatchObject({ studyUid: '1.2.840.1' });
    expect(q('urn:oid:1.2.840.1')).toMatchObject({ studyUid: '1.2.840.1' });
    expect(q('urn:dicom:uid|urn:oid:not-an-oid')).toBeNull();
    expect(q('urn:dicom:uid|1.2.840.1')).toBeNull();
    expect(q('export-7')).toMatchObject({ studyUidOrAccession: 'export-7' });
    expect(q('|export-7')).toMatchObject({ studyUid: 'export-7' });
    expect(q('|export-7', {})).toMatchObject({ studyUidOrAccession: 'export-7' });
    expect(q('urn:oid:1.2.3|A1')).toMatchObject({ accession: 'A1' });
  });

  it('subject and patient by identifier, paging, include, echo for links', () => {
    const search = parseSearch('DiagnosticReport', { 'patient:identifier': 'https://h.example.org/mrn|M1', _count: '500', _include: 'DiagnosticReport:result', _format: 'json' }, systems);
    expect(search.query).toEqual({ limit: MAX_COUNT, patientId: 'M1' });
    expect(search.includeResults).toBe(true);
    expect(search.echo).toEqual([['patient:identifier', 'https://h.example.org/mrn|M1'], ['_count', '500'], ['_include', 'DiagnosticReport:result']]);
    expect(parseSearch('ImagingStudy', { 'subject:identifier': 'other|M1' }, systems).query).toBeNull();
  });

  it('is strict: unknown, repeated or malformed parameters are errors', () => {
    expect(fails(() => parseSearch('DiagnosticReport', { subject: 'Patient/1' }, systems))).toEqual({ status: 400, issue: 'not-supported' });
    expect(fails(() => parseSearch('ImagingStudy', { _include: 'DiagnosticReport:result' }, systems))).toEqual({ status: 400, issue: 'not-supported' });
    expect(fails(() => parseSearch('DiagnosticReport', { identifier: ['a', 'b'] }, systems))).toEqual({ status: 400, issue: 'invalid' });
    expect(fails(() => parseSearch('DiagnosticReport', { _count: '-1' }, systems))).toEqual({ status: 400, issue: 'invalid' });
    expect(fails(() => parseSearch('DiagnosticReport', { _cursor: 'nope' }, systems))).toEqual({ status: 400, issue: 'invalid' });
    expect(fails(() => parseSearch('DiagnosticReport', { _format: 'xml' }, systems))).toEqual({ status: 406, issue: 'not-supported' });
  });
});
