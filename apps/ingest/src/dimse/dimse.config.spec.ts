import { loadConfig } from '@thorax/config';
import { ingestConfigSchema } from '../config';

const BASE = { KAFKA_BROKERS: '127.0.0.1:9092' };
const load = (env: Record<string, string>) => loadConfig(ingestConfigSchema, { ...BASE, ...env });

describe('DIMSE and STOW-RS configuration', () => {
  it('has the documented defaults', () => {
    expect(load({})).toMatchObject({
      INGEST_DIMSE_ENABLED: true,
      INGEST_DIMSE_PORT: 11112,
      INGEST_DIMSE_AE_TITLE: 'THORAX',
      INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: null,
      INGEST_DIMSE_MAX_PDU_BYTES: 262_144,
      INGEST_DIMSE_MAX_ASSOCIATIONS: 16,
      INGEST_STOW_ENABLED: true,
      INGEST_STOW_MAX_BYTES: 1_073_741_824,
    });
  });

  it('reads calling AE title lists; * alone or among others allows any', () => {
    expect(load({ INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: ' PACS_1 , ORTHANC ' }).INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES).toEqual(['PACS_1', 'ORTHANC']);
    expect(load({ INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES: 'PACS,*' }).INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES).toBeNull();
    expect(load({ INGEST_DIMSE_AE_TITLE: ' THORAX_AI ' }).INGEST_DIMSE_AE_TITLE).toBe('THORAX_AI');
  });

  it.each([
    ['INGEST_DIMSE_AE_TITLE', 'A_TITLE_LONGER_THAN_16'],
    ['INGEST_DIMSE_AE_TITLE', 'BACK\\SLASH'],
    ['INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES', ' , '],
    ['INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES', 'OK,WAY_TOO_LONG_AE_TITLE'],
    ['INGEST_DIMSE_MAX_PDU_BYTES', '1024'],
    ['INGEST_DIMSE_PORT', '70000'],
    ['INGEST_STOW_MAX_BYTES', '0'],
  ])('stops on a bad %s (%p), naming it', (name, value) => {
    expect(() => load({ [name]: value })).toThrow(new RegExp(name));
  });
});
