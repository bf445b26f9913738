import { decodePageToken } from '../api/cursor';
import type { StudyListQuery } from '../store/results-store.port';
import { SYSTEMS } from './fhir-codes';
import { FhirError } from './fhir-error';
import { type FhirMappingOptions, isDicomUid } from './fhir-resources';

export const SEARCHABLE_TYPES = ['DiagnosticReport', 'ImagingStudy'] as const;
export type SearchableType = (typeof SEARCHABLE_TYPES)[number];

export const DEFAULT_COUNT = 20;
export const MAX_COUNT = 100;

/** Search parameters each type supports (CapabilityStatement lists the same). */
export const SEARCH_PARAMS: Record<SearchableType, readonly string[]> = {
  DiagnosticReport: ['_id', 'identifier', 'subject:identifier', 'patient:identifier', '_count', '_include', '_cursor', '_format'],
  ImagingStudy: ['_id', 'identifier', 'subject:identifier', 'patient:identifier', '_count', '_cursor', '_format'],
};

export const INCLUDE_RESULTS = 'DiagnosticReport:result';

export interface FhirSearch {
  /** The store query; null when a parameter can never match (e.g. a foreign identifier system). */
  query: StudyListQuery | null;
  includeResults: boolean;
  /** The parameters as understood, for the Bundle's self and next links. */
  echo: [string, string][];
}

/** FHIR token `[system]|[code]`: no bar = any system; `|code` = no system. */
export function parseToken(value: string): { system?: string; code: string } {
  const bar = value.indexOf('|');
  if (bar < 0) return { code: value };
  return { system: value.slice(0, bar), code: value.slice(bar + 1) };
}

/**
 * Parses a search. Strict: an unknown or repeated parameter is a 400 (OperationOutcome) rather
 * than silently ignored, so a client never mistakes an unfiltered page for an answer.
 */
export function parseSearch(type: SearchableType, params: Record<string, unknown>, options: FhirMappingOptions): FhirSearch {
  const allowed = new Set(SEARCH_PARAMS[type]);
  const query: StudyListQuery = { limit: DEFAULT_COUNT };
  let never = false;
  let includeResults = false;
  const echo: [string, string][] = [];

  for (const [name, raw] of Object.entries(params)) {
    if (!allowed.has(name)) {
      throw new FhirError(400, 'not-supported', `search parameter ${JSON.stringify(name)} is not supported on ${type}; supported: ${[...allowed].join(', ')}`);
    }
    if (typeof raw !== 'string') throw new FhirError(400, 'invalid', `search parameter ${name} must be given once`);
    if (raw === '') continue;
    const value = raw;
    switch (name) {
      case '_id':
        query.resourceId = value;
        break;
      case 'identifier': {
        const token = parseToken(value);
        const match = type === 'DiagnosticReport' ? reportIdentifier(token, options) : studyIdentifier(token, options);
        if (match === null) never = true;
        else Object.assign(query, match);
        break;
      }
      case 'subject:identifier':
      case 'patient:identifier': {
        const token = parseToken(value);
        if (!systemMatches(token.system, options.patientIdSystem) || token.code === '') never = true;
        else query.patientId = token.code;
        break;
      }
      case '_count': {
        if (!/^\d{1,6}$/.test(value) || Number(value) < 1) throw new FhirError(400, 'invalid', '_count must be a positive integer');
        query.limit = Math.min(Number(value), MAX_COUNT);
        break;
      }
      case '_include':
        if (value !== INCLUDE_RESULTS) throw new FhirError(400, 'not-supported', `_include supports only ${INCLUDE_RESULTS}`);
        includeResults = true;
        break;
      case '_cursor':
        try {
          query.before = decodePageToken(value);
        } catch {
          throw new FhirError(400, 'invalid', '_cursor is not one this server issued');
        }
        continue; // the next link sets its own cursor
      case '_format':
        if (!['json', 'application/json', 'application/fhir+json'].includes(value)) {
          throw new FhirError(406, 'not-supported', 'this server speaks JSON only (_format=json)');
        }
        continue;
    }
    echo.push([name, value]);
  }
  return { query: never ? null : query, includeResults, echo };
}

/** Does a token's system part accept identifiers of the given system (or of none)? */
function systemMatches(tokenSystem: string | undefined, identifierSystem: string | undefined): boolean {
  if (tokenSystem === undefined) return true;
  return tokenSystem === (identifierSystem ?? '');
}

/** DiagnosticReport.identifier is the accession number. */
function reportIdentifier(token: { system?: string; code: string }, options: FhirMappingOptions): Partial<StudyListQuery> | null {
  if (token.code === '' || !systemMatches(token.system, options.accessionSystem)) return null;
  return { accession: token.code };
}

/** ImagingStudy.identifier: the Study Instance UID (urn:dicom:uid|urn:oid:…), the study key, or the accession. */
function studyIdentifier(token: { system?: string; code: string }, options: FhirMappingOptions): Partial<StudyListQuery> | null {
  const { system, code } = token;
  if (code === '') return null;
  const oid = code.startsWith('urn:oid:') ? code.slice('urn:oid:'.length) : null;
  if (system === SYSTEMS.dicomUid) return oid !== null && isDicomUid(oid) ? { studyUid: oid } : null;
  if (system === undefined) {
    if (oid !== null) return isDicomUid(oid) ? { studyUid: oid } : null;
    return { studyUidOrAccession: code };
  }
  const accessionMatches = system === (options.accessionSystem ?? '');
  // Identifiers without a system: study keys that are not DICOM UIDs, and accessions without an issuer.
  if (system === '') return accessionMatches ? { studyUidOrAccession: code } : isDicomUid(code) ? null : { studyUid: code };
  return accessionMatches ? { accession: code } : null;
}
