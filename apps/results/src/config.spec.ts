import { loadConfig } from '@thorax/config';
import { resultsConfigSchema } from './config';

describe('results config', () => {
  it('defaults to the embedded store and the contract ports', () => {
    const config = loadConfig(resultsConfigSchema, {});
    expect(config).toMatchObject({
      HTTP_PORT: 8080,
      GRPC_PORT: 50051,
      RESULTS_GROUP_ID: 'thorax-results',
      RESULTS_DATA_DIR: '.data/results',
      TOPIC_FINDINGS: 'thorax.findings.v1',
    });
    expect(config.DATABASE_URL).toBeUndefined();
  });

  it('review defaults: feedback topic, relay every 5 s, no patient identifiers; bad values named', () => {
    expect(loadConfig(resultsConfigSchema, {})).toMatchObject({
      RESULTS_FEEDBACK_TOPIC: 'thorax.feedback.v1',
      RESULTS_FEEDBACK_RELAY_MS: 5000,
      RESULTS_REVIEW_SHOW_PATIENT: false,
      RESULTS_REVIEW_WORKLIST_SIZE: 200,
    });
    expect(loadConfig(resultsConfigSchema, { RESULTS_REVIEW_SHOW_PATIENT: 'true' }).RESULTS_REVIEW_SHOW_PATIENT).toBe(true);
    expect(() => loadConfig(resultsConfigSchema, { RESULTS_REVIEW_SHOW_PATIENT: 'maybe' })).toThrow(/RESULTS_REVIEW_SHOW_PATIENT/);
    expect(() => loadConfig(resultsConfigSchema, { RESULTS_FEEDBACK_TOPIC: 'bad topic' })).toThrow(/RESULTS_FEEDBACK_TOPIC/);
    expect(() => loadConfig(resultsConfigSchema, { RESULTS_FEEDBACK_RELAY_MS: '0' })).toThrow(/RESULTS_FEEDBACK_RELAY_MS/);
  });

  it('takes a PostgreSQL URL and names a bad one', () => {
    expect(loadConfig(resultsConfigSchema, { DATABASE_URL: 'postgres://u:p@db:5432/thorax' }).DATABASE_URL).toBe(
      'postgres://u:p@db:5432/thorax',
    );
    expect(() => loadConfig(resultsConfigSchema, { DATABASE_URL: 'mysql://db/thorax' })).toThrow(/DATABASE_URL/);
    expect(() => loadConfig(resultsConfigSchema, { GRPC_PORT: 'fifty' })).toThrow(/GRPC_PORT/);
  });

  it('takes FHIR identifier systems and a base URL, and names bad ones', () => {
    const config = loadConfig(resultsConfigSchema, {
      RESULTS_FHIR_BASE_URL: 'https://ehr-gw.example.org/thorax/fhir/',
      RESULTS_FHIR_ACCESSION_SYSTEM: 'urn:oid:1.2.3.4.5',
      RESULTS_FHIR_PATIENT_ID_SYSTEM: 'https://hospital.example.org/mrn',
    });
    expect(config.RESULTS_FHIR_BASE_URL).toBe('https://ehr-gw.example.org/thorax/fhir');
    expect(config.RESULTS_FHIR_ACCESSION_SYSTEM).toBe('urn:oid:1.2.3.4.5');
    expect(() => loadConfig(resultsConfigSchema, { RESULTS_FHIR_BASE_URL: '/fhir' })).toThrow(/RESULTS_FHIR_BASE_URL/);
    expect(() => loadConfig(resultsConfigSchema, { RESULTS_FHIR_PATIENT_ID_SYSTEM: 'mrn' })).toThrow(/RESULTS_FHIR_PATIENT_ID_SYSTEM/);
  });
});
