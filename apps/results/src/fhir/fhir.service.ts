import { Inject, Injectable } from '@nestjs/common';
import { encodePageToken } from '../api/cursor';
import { type StoredStudy, STUDY_QUERIES, type StudyQueries } from '../store/results-store.port';
import { FhirError } from './fhir-error';
import { deviceResource, type FhirMappingOptions, type FhirResource, studyResources } from './fhir-resources';
import { parseSearch, SEARCHABLE_TYPES, type SearchableType } from './fhir-search';

export interface FhirOptions extends FhirMappingOptions {
  /** Absolute base URL of /fhir as clients reach it (Bundle fullUrl and links); absent: from the request. */
  baseUrl?: string | undefined;
}

export const FHIR_OPTIONS = Symbol('thorax.results.fhir-options');

export const READABLE_TYPES = ['DiagnosticReport', 'ImagingStudy', 'Observation', 'Device'] as const;

const FHIR_ID = /^[A-Za-z0-9\-.]{1,64}$/;
const OBSERVATION_ID = /^([0-9a-f]{32})-[a-z0-9-]+$/;

export interface ReadResult {
  resource: FhirResource;
  /** meta.versionId as a number (ETag); absent for unversioned resources (Device). */
  version?: number;
}

/** FHIR R4 read and search over the study aggregates; resources are derived on read, never stored twice. */
@Injectable()
export class FhirService {
  constructor(
    @Inject(STUDY_QUERIES) private readonly studies: StudyQueries,
    @Inject(FHIR_OPTIONS) readonly options: FhirOptions,
  ) {}

  async read(type: string, id: string): Promise<ReadResult> {
    if (!(READABLE_TYPES as readonly string[]).includes(type)) throw unsupported(type);
    if (!FHIR_ID.test(id)) throw new FhirError(400, 'invalid', `${JSON.stringify(id)} is not a FHIR id`);
    const missing = (): FhirError => new FhirError(404, 'not-found', `${type}/${id} is not known`);

    if (type === 'Device') {
      const stored = await this.studies.byDevice(id);
      const model = stored?.result.model;
      if (!model) throw missing();
      return { resource: deviceResource(model) };
    }
    const studyId = type === 'Observation' ? OBSERVATION_ID.exec(id)?.[1] : id;
    const stored = studyId ? await this.studies.get({ resourceId: studyId }) : null;
    if (!stored) throw missing();
    const resources = studyResources(stored, this.options);
    const resource =
      type === 'DiagnosticReport'
        ? resources.report
        : type === 'ImagingStudy'
          ? resources.imagingStudy
          : resources.observations.find((o) => o.id === id);
    if (!resource) throw missing();
    return { resource, version: stored.version };
  }

  /** A searchset Bundle, most recently updated studies first, continued through the next link. */
  async search(type: string, params: Record<string, unknown>, baseUrl: string): Promise<FhirResource> {
    if (!(SEARCHABLE_TYPES as readonly string[]).includes(type)) throw unsupported(type, 'search');
    const searchType = type as SearchableType;
    const search = parseSearch(searchType, params, this.options);
    const page = search.query ? await this.studies.list(search.query) : { items: [], next: null };
    const entries: Record<string, unknown>[] = [];
    const entry = (resource: FhirResource, mode: 'match' | 'include') =>
      entries.push({ fullUrl: `${baseUrl}/${resource.resourceType}/${resource.id}`, resource, search: { mode } });
    const included: FhirResource[] = [];
    for (const stored of page.items) {
      const resources = studyResources(stored, this.options);
      entry(searchType === 'DiagnosticReport' ? resources.report : resources.imagingStudy, 'match');
      if (search.includeResults) included.push(...resources.observations);
    }
    for (const resource of included) entry(resource, 'include');

    const link = (extra: [string, string][]) => {
      const query = new URLSearchParams([...search.echo, ...extra]).toString();
      return `${baseUrl}/${type}${query ? `?${query}` : ''}`;
    };
    const links = [{ relation: 'self', url: link(search.query?.before !== undefined ? [['_cursor', encodePageToken(search.query.before)]] : []) }];
    if (page.next !== null) links.push({ relation: 'next', url: link([['_cursor', encodePageToken(page.next)]]) });
    const complete = page.next === null && search.query?.before === undefined;
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      // Known without another query only when everything fits on this first page.
      ...(complete ? { total: page.items.length } : {}),
      link: links,
      ...(entries.length > 0 ? { entry: entries } : {}),
    };
  }

  /** The report, observations, study stub and device of one study (the thorax.fhir.v1 bundle). */
  resourcesOf(stored: StoredStudy) {
    return studyResources(stored, this.options);
  }
}

function unsupported(type: string, interaction = 'read'): FhirError {
  return new FhirError(404, 'not-supported', `${interaction} of ${JSON.stringify(type)} is not supported; see /fhir/metadata`);
}
