import { SEARCH_PARAMS, type SearchableType } from './fhir-search';

const SEARCH_PARAM_TYPES: Record<string, { type: string; documentation: string }> = {
  _id: { type: 'token', documentation: 'The resource id.' },
  identifier: {
    type: 'token',
    documentation:
      'DiagnosticReport: the accession number. ImagingStudy: the Study Instance UID as urn:dicom:uid|urn:oid: followed by the UID, a study key without a system, or the accession number.',
  },
  'subject:identifier': { type: 'reference', documentation: "The patient's identifier as the PACS sent it ([system|]value); subjects are logical references." },
  'patient:identifier': { type: 'reference', documentation: 'Same as subject:identifier.' },
};

/**
 * GET /fhir/metadata: what this server does, as an R4 CapabilityStatement. `bearerScope`: the scope
 * a bearer token needs when API auth is on (rest.security says so); null when auth is off.
 */
export function capabilityStatement(version: string, baseUrl: string, date: string, bearerScope: string | null = null): Record<string, unknown> {
  const searchable = (type: SearchableType) =>
    SEARCH_PARAMS[type]
      .filter((name) => name in SEARCH_PARAM_TYPES)
      .map((name) => ({ name, type: SEARCH_PARAM_TYPES[name]?.type, documentation: SEARCH_PARAM_TYPES[name]?.documentation }));
  const read = [{ code: 'read' }];
  return {
    resourceType: 'CapabilityStatement',
    text: {
      status: 'generated',
      div: '<div xmlns="http://www.w3.org/1999/xhtml"><p>Thorax results: read-only FHIR R4 server for AI findings on chest X-ray studies.</p></div>',
    },
    status: 'active',
    date,
    publisher: 'Thorax',
    kind: 'instance',
    software: { name: 'Thorax results', version },
    implementation: { description: 'Thorax results service: AI chest X-ray findings (read-only)', url: baseUrl },
    fhirVersion: '4.0.1',
    format: ['application/fhir+json', 'json'],
    rest: [
      {
        mode: 'server',
        ...(bearerScope === null
          ? {}
          : {
              security: {
                cors: false,
                service: [
                  {
                    coding: [{ system: 'http://terminology.hl7.org/CodeSystem/restful-security-service', code: 'OAuth', display: 'OAuth' }],
                    text: 'OAuth 2.0 bearer token (JWT)',
                  },
                ],
                description: `Every interaction except GET /metadata needs \`Authorization: Bearer <JWT>\` from the hospital's identity provider with the \`${bearerScope}\` scope: 401 without a valid token, 403 without the scope.`,
              },
            }),
        documentation:
          'Read-only. One DiagnosticReport (status preliminary, or cancelled when no image could be analysed) and ImagingStudy stub per study, one Observation per ChestX-ray14 label, one Device per model version. Unknown search parameters are rejected with 400. Pages continue through the Bundle next link.',
        resource: [
          {
            type: 'DiagnosticReport',
            interaction: [...read, { code: 'search-type' }],
            versioning: 'versioned',
            searchInclude: ['DiagnosticReport:result'],
            searchParam: searchable('DiagnosticReport'),
          },
          { type: 'ImagingStudy', interaction: [...read, { code: 'search-type' }], versioning: 'versioned', searchParam: searchable('ImagingStudy') },
          { type: 'Observation', interaction: read, versioning: 'versioned' },
          { type: 'Device', interaction: read },
        ],
      },
    ],
  };
}
