import { CHESTXRAY14_LABELS, FEEDBACK_COMMENT_MAX, feedbackEventJsonSchema, findingsEventJsonSchema } from '@thorax/contracts';
import { API_ERROR_CODES } from '../api/api-error';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from '../findings/list-params';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (type: string, extra: Schema = {}): Schema => ({ type: [type, 'null'], ...extra });
const json = (schema: Schema, description: string): Schema => ({ description, content: { 'application/json': { schema } } });
const fhirJson = (description: string): Schema => ({
  description,
  content: { 'application/fhir+json': { schema: { type: 'object', required: ['resourceType'], properties: { resourceType: { type: 'string' } } } } },
});
const errors = (...statuses: number[]): Record<string, Schema> =>
  Object.fromEntries(statuses.map((s) => [String(s), { $ref: `#/components/responses/Error${s}` }]));
const fhirErrors = (...statuses: number[]): Record<string, Schema> =>
  Object.fromEntries(statuses.map((s) => [String(s), s === 401 ? { $ref: '#/components/responses/FhirUnauthorized' } : fhirJson('OperationOutcome')]));
/** What the HTTP server itself answers before routing: an unparsable request (400), oversized headers (431). */
const clientError: Record<string, Schema> = { '4XX': { $ref: '#/components/responses/ClientError' } };
/** Open to every caller, token or not (health, metrics, this document, the CapabilityStatement). */
const PUBLIC: Schema = { security: [] };
/** The `WWW-Authenticate` challenge of a 401 (RFC 6750). */
const challengeHeader: Schema = {
  'WWW-Authenticate': {
    description: 'RFC 6750 challenge, e.g. `Bearer realm="thorax", error="invalid_token", error_description="the bearer token has expired"`.',
    schema: { type: 'string' },
  },
};
const query = (name: string, description: string, schema: Schema = { type: 'string' }): Schema => ({ name, in: 'query', required: false, description, schema });
const path = (name: string, description: string): Schema => ({ name, in: 'path', required: true, description, schema: { type: 'string' } });

/** The findings event schema as a component (its own $schema/$id stay in the contract file). */
function findingsEventComponent(): Schema {
  const { $schema: _schema, $id: _id, ...rest } = findingsEventJsonSchema as Schema;
  return rest;
}

/** The feedback event schema as a component. */
function feedbackEventComponent(): Schema {
  const { $schema: _schema, $id: _id, ...rest } = feedbackEventJsonSchema as Schema;
  return rest;
}

const png = (description: string): Schema => ({
  description,
  headers: {
    ETag: { description: 'Strong entity tag of the object (review objects are write-once); send it back in If-None-Match.', schema: { type: 'string' } },
    'Cache-Control': { description: '`private, max-age=86400`: browsers may keep it, shared caches may not.', schema: { type: 'string' } },
  },
  content: { 'image/png': { schema: { type: 'string', contentMediaType: 'image/png' } } },
});
const notModified: Schema = { '304': { description: 'Not modified: the If-None-Match tag is current.' } };
const identifiers: Schema = {
  studyUid: nullable('string', { description: 'Only with RESULTS_REVIEW_SHOW_PATIENT=true.' }),
  accession: nullable('string', { description: 'Only with RESULTS_REVIEW_SHOW_PATIENT=true.' }),
  patientId: nullable('string', { description: 'Only with RESULTS_REVIEW_SHOW_PATIENT=true.' }),
};

const worklistSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['studies'],
  properties: {
    studies: {
      type: 'array',
      description: 'STAT studies first, then studies with a positive finding, then the most recently completed.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['ref', 'priority', 'positives', 'images', 'completedAt', 'model'],
        properties: {
          ref: { type: 'string', description: 'Opaque reference of the study (10 hex digits of a SHA-256 of its key), shown instead of identifiers.' },
          priority: { enum: ['stat', 'routine'] },
          positives: { type: 'array', items: { type: 'string' } },
          images: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['id', 'viewPosition', 'positives', 'reviewedLabels', 'completedAt'],
              properties: {
                id: { type: 'string' },
                viewPosition: nullable('string'),
                positives: { type: 'array', items: { type: 'string' } },
                reviewedLabels: { type: 'array', items: { type: 'string' }, description: 'Labels with at least one verdict.' },
                completedAt: { type: 'string', format: 'date-time' },
              },
            },
          },
          completedAt: { type: 'string', format: 'date-time' },
          model: { oneOf: [{ type: 'null' }, { type: 'object', required: ['name', 'version'], properties: { name: { type: 'string' }, version: { type: 'string' } } }] },
          ...identifiers,
        },
      },
    },
  },
};

const reviewResultSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'ref', 'priority', 'viewPosition', 'model', 'findings', 'positives', 'wireImage', 'heatmaps', 'mapLabels', 'timing', 'feedback'],
  properties: {
    id: { type: 'string' },
    ref: { type: 'string' },
    priority: { enum: ['stat', 'routine'] },
    viewPosition: nullable('string'),
    model: { type: 'object', required: ['name', 'version', 'sha256'], properties: { name: { type: 'string' }, version: { type: 'string' }, sha256: { type: 'string' }, provider: { type: 'string' }, provenance: provenanceSchema() } },
    findings: (findingsEventComponent()['properties'] as Record<string, Schema>)['findings'],
    positives: { type: 'array', items: { type: 'string' } },
    wireImage: { oneOf: [{ type: 'null' }, { type: 'object', required: ['width', 'height'], properties: { width: { type: 'integer' }, height: { type: 'integer' } } }], description: 'Size of the wire image at /v1/findings/{id}/image; null when none was kept.' },
    heatmaps: { type: 'array', items: { type: 'string' }, description: 'Positive labels with a heatmap at /v1/findings/{id}/heatmaps/{label} (the overlays the page offers).' },
    mapLabels: { type: 'array', items: { type: 'string' }, description: 'Every label with a heatmap there: all labels of the model when the result has activation maps, else the same as heatmaps.' },
    timing: (findingsEventComponent()['properties'] as Record<string, Schema>)['timing'],
    feedback: { type: 'array', items: ref('FeedbackEvent'), description: "Every reviewer's current verdicts on this result." },
    ...identifiers,
  },
};

/** The model provenance object, as the findings event schema defines it. */
function provenanceSchema(): Schema {
  const model = (findingsEventComponent()['properties'] as { model: { oneOf: Schema[] } }).model;
  const object = model.oneOf.find((s) => s['type'] === 'object') as { properties: { provenance: Schema } };
  return object.properties.provenance;
}

const studyResultSchema: Schema = {
  type: 'object',
  additionalProperties: false,
  required: ['schema', 'studyUid', 'accession', 'patientId', 'status', 'model', 'findings', 'positives', 'contributingImages', 'images', 'timing', 'version', 'updatedAt'],
  properties: {
    schema: { const: 'thorax.study.v1' },
    studyUid: { type: 'string' },
    accession: nullable('string'),
    patientId: nullable('string'),
    status: { enum: ['ok', 'error'], description: '`ok` when at least one image contributed.' },
    model: {
      oneOf: [
        { type: 'null' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'version', 'sha256'],
          properties: { name: { type: 'string' }, version: { type: 'string' }, sha256: { type: 'string' }, provenance: provenanceSchema() },
        },
      ],
    },
    findings: {
      type: 'array',
      description: 'Per label, the maximum over the contributing (frontal) images, in the model\'s label order.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['label', 'probability', 'threshold', 'positive', 'imageId'],
        properties: {
          label: { type: 'string', examples: [...CHESTXRAY14_LABELS] },
          probability: { type: 'number', minimum: 0, maximum: 1 },
          threshold: { type: 'number', minimum: 0, maximum: 1 },
          positive: { type: 'boolean' },
          imageId: { type: 'string', description: 'The image the maximum came from.' },
        },
      },
    },
    positives: { type: 'array', items: { type: 'string' } },
    contributingImages: { type: 'array', items: { type: 'string' } },
    images: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'viewPosition', 'status', 'modelVersion', 'contributed', 'excluded', 'errorCode'],
        properties: {
          id: { type: 'string' },
          viewPosition: nullable('string'),
          status: { enum: ['ok', 'error'] },
          modelVersion: nullable('string'),
          contributed: { type: 'boolean' },
          excluded: { enum: [null, 'error', 'not-frontal', 'view-unknown', 'other-model-version'] },
          errorCode: nullable('string'),
        },
      },
    },
    timing: {
      type: 'object',
      additionalProperties: false,
      required: ['firstReceivedAt', 'lastCompletedAt'],
      properties: { firstReceivedAt: { type: 'string', format: 'date-time' }, lastCompletedAt: { type: 'string', format: 'date-time' } },
    },
    version: { type: 'integer', minimum: 1, description: '1 for the first aggregate, +1 each time it changes.' },
    updatedAt: { type: 'string', format: 'date-time' },
  },
};

/** OpenAPI 3.1 description of the results HTTP API, served at GET /openapi.json. */
export function openApiDocument(version: string): Schema {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Thorax results API',
      version,
      description:
        'AI findings on chest X-rays (ChestX-ray14 labels) for EHR systems: per image (thorax.findings.v1 events), per study (aggregates) and as FHIR R4 resources. The same data is served over gRPC (thorax.v1.ResultsService).\n\n' +
        'When the server is configured for it (AUTH_JWKS_URL or AUTH_JWKS_FILE), every operation except the public ones (health, metrics, this document, the FHIR CapabilityStatement) needs `Authorization: Bearer <JWT>` with the read scope (`thorax.read` unless configured otherwise; the admin scope `thorax.admin` implies it). A missing, malformed, expired or otherwise invalid token gets 401 with a `WWW-Authenticate: Bearer` challenge, a valid token without the scope 403 (`error="insufficient_scope"`), and 503 when the signing keys cannot be fetched.',
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    servers: [{ url: '/', description: 'This server (HTTP, or HTTPS when TLS is configured).' }],
    security: [{ bearerAuth: [] }],
    tags: [
      { name: 'Findings', description: 'Per-image results (thorax.findings.v1 events).' },
      { name: 'Studies', description: 'Per-study aggregates.' },
      { name: 'FHIR', description: 'FHIR R4 resources (DiagnosticReport, Observation, ImagingStudy, Device).' },
      { name: 'Review', description: 'The radiologist review page (/review), its images and reviewers\' verdicts (thorax.feedback.v1).' },
      { name: 'Operations', description: 'Health, readiness, metrics and this document: public.' },
    ],
    paths: {
      '/v1/findings/{id}': {
        get: {
          operationId: 'getFindings',
          tags: ['Findings'],
          summary: "An image's latest result (or one model version's).",
          parameters: [path('id', 'The image id (Kafka record key).'), query('modelVersion', 'Return the result of this model version.')],
          responses: { '200': json(ref('FindingsEvent'), 'The stored thorax.findings.v1 event.'), ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/v1/findings/{id}/image': {
        get: {
          operationId: 'getWireImage',
          tags: ['Review'],
          summary: 'The 8-bit grey wire image the model saw (PNG), streamed from the object store.',
          parameters: [path('id', 'The image id.'), query('modelVersion', 'The image of this model version\'s result.'), { name: 'If-None-Match', in: 'header', required: false, schema: { type: 'string' } }],
          responses: { '200': png('The wire image.'), ...notModified, ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/v1/findings/{id}/heatmaps/{label}': {
        get: {
          operationId: 'getHeatmap',
          tags: ['Review'],
          summary: "One label's class activation map as a heatmap (RGBA PNG, the size of the wire image), rendered on request from the result's activation maps.",
          description:
            'Any label of the model when the result has activation maps (mapLabels of /v1/review/results/{id}); for results of older producers, the positive labels whose PNG they stored. The entity tag covers the maps object, the label and the version of the rendering.',
          parameters: [
            path('id', 'The image id.'),
            { ...path('label', 'A label of the model (NIH spelling for the ChestX-ray14 models).'), schema: { type: 'string', examples: [...CHESTXRAY14_LABELS] } },
            query('modelVersion', 'The map of this model version\'s result.'),
            { name: 'If-None-Match', in: 'header', required: false, schema: { type: 'string' } },
          ],
          responses: { '200': png('The heatmap.'), ...notModified, ...errors(400, 401, 403, 404, 500, 503) },
        },
      },
      '/v1/findings/{id}/feedback': {
        post: {
          operationId: 'submitFeedback',
          tags: ['Review'],
          summary: "A reviewer's verdict on one label: stored (one row per image, model version, label and reviewer; a change is a new revision) and published to thorax.feedback.v1.",
          description: 'Needs the read scope. With authentication on, the reviewer is the token\'s subject (`sub`, else `client_id`/`azp`); without it, the optional `reviewer` field or `anonymous`. Sending the same verdict and comment again changes nothing.',
          parameters: [path('id', 'The image id.')],
          requestBody: { required: true, content: { 'application/json': { schema: ref('FeedbackRequest') } } },
          responses: { '200': json(ref('FeedbackResponse'), 'The stored verdict.'), ...errors(400, 401, 403, 404, 503) },
        },
        get: {
          operationId: 'listFeedback',
          tags: ['Review'],
          summary: "Every reviewer's current verdicts on an image's latest result (or one model version's).",
          parameters: [path('id', 'The image id.'), query('modelVersion', 'The verdicts on this model version\'s result.')],
          responses: {
            '200': json({ type: 'object', additionalProperties: false, required: ['feedback'], properties: { feedback: { type: 'array', items: ref('FeedbackEvent') } } }, 'Verdicts by label, then reviewer.'),
            ...errors(400, 401, 403, 404, 503),
          },
        },
      },
      '/v1/review/worklist': {
        get: {
          operationId: 'reviewWorklist',
          tags: ['Review'],
          summary: 'Recent studies for review: STAT first, then positives, then newest. No patient identifiers unless RESULTS_REVIEW_SHOW_PATIENT=true.',
          parameters: [query('limit', 'Studies (1-200, default 50).', { type: 'integer', minimum: 1, maximum: 200 })],
          responses: { '200': json(worklistSchema, 'The worklist.'), ...errors(400, 401, 403, 503) },
        },
      },
      '/v1/review/results/{id}': {
        get: {
          operationId: 'reviewResult',
          tags: ['Review'],
          summary: 'One ok result as the study view shows it: findings, model, which review images exist, and the verdicts given.',
          parameters: [path('id', 'The image id.'), query('modelVersion', 'This model version\'s result.')],
          responses: { '200': json(reviewResultSchema, 'The result.'), ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/review': {
        get: {
          operationId: 'reviewPage',
          tags: ['Review'],
          summary: 'The review web page (public static shell; its data comes from the APIs above, which need the read scope).',
          ...PUBLIC,
          responses: { '200': { description: 'HTML page.', content: { 'text/html': { schema: { type: 'string' } } } }, ...clientError },
        },
      },
      '/v1/findings': {
        get: {
          operationId: 'listFindings',
          tags: ['Findings'],
          summary: 'Stored results, newest first, with cursor pagination.',
          parameters: [
            query('studyUid', 'Study Instance UID.'),
            query('accession', 'Accession number.'),
            query('status', 'ok or error.', { enum: ['ok', 'error'] }),
            query('positiveLabel', 'Only results where this label is positive.', { enum: [...CHESTXRAY14_LABELS] }),
            query('from', 'Completed at or after (RFC 3339 with a time zone).', { type: 'string', format: 'date-time' }),
            query('to', 'Completed before (RFC 3339 with a time zone).', { type: 'string', format: 'date-time' }),
            query('limit', `Page size (default ${DEFAULT_PAGE_SIZE}, at most ${MAX_PAGE_SIZE}).`, { type: 'integer', minimum: 1 }),
            query('cursor', 'nextCursor of the previous page.'),
          ],
          responses: { '200': json(ref('FindingsList'), 'A page of results.'), ...errors(400, 401, 403, 503) },
        },
      },
      '/v1/studies/{studyUid}': {
        get: {
          operationId: 'getStudy',
          tags: ['Studies'],
          summary: 'A study aggregate: per label the maximum over its frontal images, with the images that contributed.',
          parameters: [path('studyUid', 'Study Instance UID (or the study key the PACS sent).')],
          responses: { '200': json(ref('StudyResult'), 'The study aggregate.'), ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/fhir/metadata': {
        get: {
          operationId: 'fhirCapabilities',
          summary: 'FHIR R4 CapabilityStatement (public: clients read it before they authenticate).',
          tags: ['FHIR'],
          ...PUBLIC,
          responses: { '200': fhirJson('CapabilityStatement'), ...fhirErrors(406) },
        },
      },
      '/fhir/{type}': {
        get: {
          operationId: 'fhirSearch',
          summary: 'FHIR search (DiagnosticReport, ImagingStudy): identifier, subject:identifier, patient:identifier, _id, _count, _include=DiagnosticReport:result.',
          tags: ['FHIR'],
          parameters: [path('type', 'DiagnosticReport or ImagingStudy.')],
          responses: { '200': fhirJson('A searchset Bundle.'), ...fhirErrors(400, 401, 403, 404, 406, 503) },
        },
      },
      '/fhir/{type}/{id}': {
        get: {
          operationId: 'fhirRead',
          summary: 'FHIR read: DiagnosticReport, Observation, ImagingStudy, Device.',
          tags: ['FHIR'],
          parameters: [path('type', 'Resource type.'), path('id', 'Resource id.')],
          responses: { '200': fhirJson('The resource (ETag W/"<versionId>").'), ...fhirErrors(400, 401, 403, 404, 503) },
        },
      },
      '/openapi.json': {
        get: { operationId: 'openApi', summary: 'This document.', tags: ['Operations'], ...PUBLIC, responses: { '200': json({ type: 'object' }, 'OpenAPI 3.1 document.'), ...clientError } },
      },
      '/healthz': { get: { operationId: 'liveness', summary: 'Alive.', tags: ['Operations'], ...PUBLIC, responses: { '200': json({ type: 'object' }, 'Alive.'), ...clientError } } },
      '/readyz': {
        get: {
          operationId: 'readiness',
          summary: 'Store and broker reachable.',
          tags: ['Operations'],
          ...PUBLIC,
          responses: { '200': json({ type: 'object' }, 'Ready.'), ...clientError, '503': json({ type: 'object' }, 'Not ready.') },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          summary: 'Prometheus metrics.',
          tags: ['Operations'],
          ...PUBLIC,
          responses: { '200': { description: 'Prometheus text format.', content: { 'text/plain': { schema: { type: 'string' } } } }, ...clientError },
        },
      },
    },
    components: {
      securitySchemes: {
        bearerAuth: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            'A JWT signed by the configured issuer (verified against its JWK Set; RS*, PS*, ES* or EdDSA; `exp` required; `iss`/`aud` checked when configured). Scopes from the `scope` or `scp` claim: the read scope for every operation here.',
        },
      },
      schemas: {
        FindingsEvent: findingsEventComponent(),
        FindingsList: {
          type: 'object',
          additionalProperties: false,
          required: ['results', 'nextCursor'],
          properties: { results: { type: 'array', items: ref('FindingsEvent') }, nextCursor: nullable('string', { description: 'Pass as cursor for the next page; null on the last.' }) },
        },
        StudyResult: studyResultSchema,
        FeedbackEvent: feedbackEventComponent(),
        FeedbackRequest: {
          type: 'object',
          additionalProperties: false,
          required: ['label', 'verdict'],
          properties: {
            label: { type: 'string', examples: [...CHESTXRAY14_LABELS] },
            verdict: { enum: ['agree', 'disagree'], description: "agree: the model's call (positive or negative) is right." },
            comment: nullable('string', { maxLength: FEEDBACK_COMMENT_MAX, description: 'Optional free text; no patient identifiers.' }),
            modelVersion: { type: 'string', description: "The reviewed result's model version (default: the latest result)." },
            reviewer: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._@ -]{0,63}$', description: 'Only without API authentication (with it, the token subject is the reviewer and this field is refused).' },
          },
        },
        FeedbackResponse: {
          type: 'object',
          additionalProperties: false,
          required: ['feedback', 'published'],
          properties: {
            feedback: ref('FeedbackEvent'),
            published: { type: 'boolean', description: 'Already on thorax.feedback.v1; false: stored, and the relay publishes it (RESULTS_FEEDBACK_RELAY_MS).' },
          },
        },
        Error: {
          type: 'object',
          additionalProperties: false,
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              additionalProperties: false,
              required: ['code', 'message'],
              properties: { code: { enum: [...API_ERROR_CODES] }, message: { type: 'string' } },
            },
          },
        },
      },
      responses: {
        Error400: json(ref('Error'), 'INVALID_ARGUMENT'),
        ClientError: { description: 'A request the HTTP server cannot parse (400) or with headers over its limit (431), answered before routing, without a body.' },
        Error401: { ...json(ref('Error'), 'UNAUTHENTICATED: no bearer token, or one that is malformed, expired, wrongly signed or for another issuer or audience.'), headers: challengeHeader },
        Error403: json(ref('Error'), 'PERMISSION_DENIED: the token is valid but lacks the read scope.'),
        FhirUnauthorized: { ...fhirJson('OperationOutcome (issue code `login`).'), headers: challengeHeader },
        Error404: json(ref('Error'), 'NOT_FOUND'),
        Error500: json(ref('Error'), 'INTERNAL: an unexpected failure, e.g. a stored object that cannot be read.'),
        Error503: json(ref('Error'), 'UNAVAILABLE: the store is not reachable, or the token signing keys cannot be fetched.'),
      },
    },
  };
}
