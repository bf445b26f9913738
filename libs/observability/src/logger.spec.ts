import { createLogger, REDACTED_PATHS } from './logger';

/** Values that must never reach a log line, whatever object they are nested in. */
const PATIENT = {
  name: 'DOE^JANE^Q',
  id: 'P-0042-SECRET',
  otherId: 'MRN-99817',
  accession: 'ACC-7781-SECRET',
  birthDate: '19700101',
  bearer: 'Bearer eyJhbGciOiJSUzI1NiJ9.patient-token.sig',
  password: 'sasl-password-secret',
};

function capture(level = 'info') {
  const lines: string[] = [];
  const log = createLogger({ service: 'redaction-test', version: '0', level }, { write: (line: string) => void lines.push(line) });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { log, lines, records };
}

function expectNoPatientData(lines: string[]) {
  const output = lines.join('');
  for (const [kind, value] of Object.entries(PATIENT)) {
    expect({ kind, leaked: output.includes(value) }).toEqual({ kind, leaked: false });
  }
}

describe('createLogger redaction (forced logs of patient fields)', () => {
  it('censors patient fields at the top level and nested up to three levels, keeping everything else', () => {
    const { log, lines, records } = capture();
    log.info({ imageId: 'img-1', patientId: PATIENT.id, patientName: PATIENT.name, accession: PATIENT.accession }, 'top level');
    log.warn(
      { imageId: 'img-2', study: { studyUid: '1.2.3', patientId: PATIENT.id, accession: PATIENT.accession, patientBirthDate: PATIENT.birthDate } },
      'one level down',
    );
    log.error(
      { event: { id: 'img-3', study: { patientId: PATIENT.id, patientName: PATIENT.name, accessionNumber: PATIENT.accession, birthDate: PATIENT.birthDate } } },
      'two levels down',
    );
    log.info(
      {
        dataset: {
          PatientID: PATIENT.id,
          PatientName: PATIENT.name,
          PatientBirthDate: PATIENT.birthDate,
          AccessionNumber: PATIENT.accession,
          OtherPatientIDs: PATIENT.otherId,
          Modality: 'DX',
        },
      },
      'DICOM keywords',
    );
    expect(lines).toHaveLength(4);
    expectNoPatientData(lines);
    const [top, one, two, dicom] = records();
    expect(top).toMatchObject({ imageId: 'img-1', patientId: '[redacted]', patientName: '[redacted]', accession: '[redacted]', msg: 'top level' });
    expect(one).toMatchObject({
      level: 'warn',
      imageId: 'img-2',
      study: { studyUid: '1.2.3', patientId: '[redacted]', accession: '[redacted]', patientBirthDate: '[redacted]' },
    });
    expect(two).toMatchObject({
      event: { id: 'img-3', study: { patientId: '[redacted]', patientName: '[redacted]', accessionNumber: '[redacted]', birthDate: '[redacted]' } },
    });
    expect(dicom?.['dataset']).toEqual({
      PatientID: '[redacted]',
      PatientName: '[redacted]',
      PatientBirthDate: '[redacted]',
      AccessionNumber: '[redacted]',
      OtherPatientIDs: '[redacted]',
      Modality: 'DX',
    });
  });

  it('censors patient headers of Kafka records, bearer tokens and credentials', () => {
    const { log, lines, records } = capture();
    const headers = {
      'content-type': 'application/dicom',
      'thorax-patient-id': PATIENT.id,
      'thorax-patient-name': PATIENT.name,
      'thorax-accession': PATIENT.accession,
      'patient-id': PATIENT.id,
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    };
    log.warn({ record: { topic: 'thorax.studies.v1', key: 'img-4', headers } }, 'record headers');
    log.info({ headers: { ...headers } }, 'bare headers');
    log.info({ req: { method: 'GET', url: '/v1/findings/img-4', headers: { authorization: PATIENT.bearer, accept: 'application/json' } } }, 'request');
    log.info({ headers: { authorization: PATIENT.bearer } }, 'authorization');
    log.info({ token: PATIENT.bearer, sasl: { password: PATIENT.password } }, 'credentials');
    expectNoPatientData(lines);
    const [record, bare, request, authorization, credentials] = records();
    const censored = {
      'content-type': 'application/dicom',
      'thorax-patient-id': '[redacted]',
      'thorax-patient-name': '[redacted]',
      'thorax-accession': '[redacted]',
      'patient-id': '[redacted]',
      traceparent: headers.traceparent,
    };
    expect(record).toMatchObject({ record: { topic: 'thorax.studies.v1', key: 'img-4', headers: censored } });
    expect(bare?.['headers']).toEqual(censored);
    expect(request).toMatchObject({ req: { method: 'GET', url: '/v1/findings/img-4', headers: { authorization: '[redacted]', accept: 'application/json' } } });
    expect(authorization).toMatchObject({ headers: { authorization: '[redacted]' } });
    expect(credentials).toMatchObject({ token: '[redacted]', sasl: { password: '[redacted]' } });
  });

  it('censors patient fields bound to a child logger and on logged errors', () => {
    const { log, lines, records } = capture();
    log.child({ imageId: 'img-5', patientId: PATIENT.id, study: { accession: PATIENT.accession } }).warn('child bindings');
    const error = Object.assign(new Error('decode failed'), { patientName: PATIENT.name, study: { patientId: PATIENT.id } });
    log.error({ err: error }, 'error object');
    expectNoPatientData(lines);
    const [child, failed] = records();
    expect(child).toMatchObject({ imageId: 'img-5', patientId: '[redacted]', study: { accession: '[redacted]' } });
    expect(failed).toMatchObject({ err: { message: 'decode failed', patientName: '[redacted]', study: { patientId: '[redacted]' } } });
  });

  it('every listed path is a pattern pino accepts (a bad one would throw at start-up)', () => {
    expect(REDACTED_PATHS.length).toBeGreaterThan(30);
    expect(() => capture()).not.toThrow();
  });
});
