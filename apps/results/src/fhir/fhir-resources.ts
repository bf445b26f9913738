import { type ModelInfo, provenanceNote, UNKNOWN_DATA } from '@thorax/contracts';
import type { StoredStudy } from '../store/results-store.port';
import { deviceResourceId, observationResourceId, studyResourceId } from '../domain/resource-ids';
import type { StudyFinding } from '../domain/study-aggregate';
import {
  ACCESSION_TYPE,
  AI_ASSERTED,
  CHEST_XRAY_SINGLE_VIEW,
  CHEST_XRAY_TWO_VIEWS,
  type Coding,
  IMAGING,
  labelConcept,
  NEGATIVE,
  POSITIVE,
  RADIOLOGY,
  SYSTEMS,
} from './fhir-codes';

/** A FHIR R4 resource as JSON. The shapes below are checked against R4 by the HAPI validator in tests. */
export interface FhirResource {
  resourceType: string;
  id?: string;
  meta?: { versionId?: string; lastUpdated?: string; security?: Coding[] };
  [element: string]: unknown;
}

export interface FhirMappingOptions {
  /** Identifier.system of accession numbers (the issuer's URI); absent: identifiers carry none. */
  accessionSystem?: string | undefined;
  /** Identifier.system of patient ids from the PACS; absent: identifiers carry none. */
  patientIdSystem?: string | undefined;
}

/** Everything FHIR says about one study: its report, one Observation per label, the study stub. */
export interface StudyResources {
  report: FhirResource;
  observations: FhirResource[];
  imagingStudy: FhirResource;
  device: FhirResource | null;
}

const DICOM_UID = /^[0-2](\.(0|[1-9][0-9]*))+$/;

/** True when the study key is a DICOM UID (an OID), so it can be written as urn:oid:… */
export function isDicomUid(value: string): boolean {
  return value.length <= 64 && DICOM_UID.test(value);
}

export function studyResources(stored: StoredStudy, options: FhirMappingOptions): StudyResources {
  const study = stored.result;
  const id = studyResourceId(study.studyUid);
  const meta = {
    versionId: String(stored.version),
    lastUpdated: stored.updatedAt.toISOString(),
    security: [AI_ASSERTED],
  };
  const issued = stored.updatedAt.toISOString();
  const subject = patientReference(study.patientId, options) ?? UNKNOWN_PATIENT;
  const accession = study.accession ? [accessionIdentifier(study.accession, options)] : [];
  const deviceId = study.model ? deviceResourceId(study.model.name, study.model.version) : null;
  const contributing = study.images.filter((i) => i.contributed);

  const observations = study.findings.map((finding): FhirResource => {
    const threshold = probability(finding.threshold);
    return {
      resourceType: 'Observation',
      id: observationResourceId(id, finding.label),
      meta,
      text: narrative(
        `<p><b>${escape(finding.label)}</b>: ${finding.positive ? 'positive' : 'negative'} — probability ${finding.probability.toFixed(3)}` +
          ` (threshold ${finding.threshold.toFixed(3)}), AI-asserted, not reviewed by a radiologist.</p>`,
      ),
      status: 'preliminary',
      category: [{ coding: [IMAGING] }],
      code: labelConcept(finding.label),
      subject,
      issued,
      valueQuantity: probability(finding.probability),
      interpretation: [{ coding: [finding.positive ? POSITIVE : NEGATIVE] }],
      note: [{ text: maxNote(finding, contributing.length) }, ...(study.model ? [{ text: modelNote(study.model) }] : [])],
      referenceRange: [
        {
          high: threshold,
          text: `Model decision threshold: positive at or above ${finding.threshold}`,
        },
      ],
      ...(deviceId ? { device: { reference: `Device/${deviceId}` } } : {}),
      derivedFrom: [{ reference: `ImagingStudy/${id}` }],
    };
  });

  const views = new Set(study.images.map((i) => (i.viewPosition ?? '').trim().toUpperCase()).filter((v) => v !== ''));
  const analysed = study.status === 'ok';
  const conclusion = conclusionText(study.findings, study.model, contributing.length, study.images.length, analysed);
  const report: FhirResource = {
    resourceType: 'DiagnosticReport',
    id,
    meta,
    text: narrative(`<p>${escape(conclusion)}</p>`),
    ...(accession.length > 0 ? { identifier: accession } : {}),
    // Not analysed at all: cancelled, so "no finding" and "not analysed" stay distinguishable.
    status: analysed ? 'preliminary' : 'cancelled',
    category: [{ coding: [RADIOLOGY] }],
    code: { coding: [views.size >= 2 ? CHEST_XRAY_TWO_VIEWS : CHEST_XRAY_SINGLE_VIEW], text: 'Chest X-ray, AI findings' },
    subject,
    issued,
    ...(observations.length > 0 ? { result: observations.map((o) => ({ reference: `Observation/${o.id}` })) } : {}),
    imagingStudy: [{ reference: `ImagingStudy/${id}` }],
    conclusion,
    ...(study.positives.length > 0 ? { conclusionCode: study.positives.map(labelConcept) } : {}),
  };

  const studyIdentifiers = [
    isDicomUid(study.studyUid) ? { system: SYSTEMS.dicomUid, value: `urn:oid:${study.studyUid}` } : { value: study.studyUid },
    ...accession,
  ];
  const imagingStudy: FhirResource = {
    resourceType: 'ImagingStudy',
    id,
    meta: { versionId: meta.versionId, lastUpdated: meta.lastUpdated },
    text: narrative(
      `<p>Chest X-ray study (stub kept by Thorax): ${study.images.length} image(s) received, ${contributing.length} analysed for the study result.</p>`,
    ),
    identifier: studyIdentifiers,
    status: 'available',
    subject,
    numberOfInstances: study.images.length,
    description: 'Chest X-ray',
  };

  return { report, observations, imagingStudy, device: study.model ? deviceResource(study.model) : null };
}

/** The Device that stands for one model version (Observation.device points here). */
export function deviceResource(model: ModelInfo): FhirResource {
  return {
    resourceType: 'Device',
    id: deviceResourceId(model.name, model.version),
    text: narrative(
      `<p>AI model ${escape(model.name)}, version ${escape(model.version)} (ChestX-ray14 classifier). ${escape(modelNote(model))}</p>`,
    ),
    status: 'active',
    deviceName: [{ name: model.name, type: 'model-name' }],
    type: { text: 'Chest X-ray classification model (ChestX-ray14 labels)' },
    version: [
      { value: model.version },
      { type: { text: 'SHA-256 of the model file' }, value: model.sha256 },
    ],
    property: [
      { type: { text: 'Training data' }, valueCode: [{ text: model.provenance?.data ?? UNKNOWN_DATA }] },
      { type: { text: 'Validated for clinical use' }, valueCode: [{ text: model.provenance?.clinical ? 'yes' : 'no' }] },
    ],
    note: [{ text: modelNote(model) }],
  };
}

/** What the model was trained on and whether it is for clinical use (recorded, or unknown for old results). */
function modelNote(model: ModelInfo): string {
  return model.provenance?.note ?? provenanceNote({ data: UNKNOWN_DATA, clinical: false });
}

/** The subject when the PACS sent no patient id: marked unknown (ImagingStudy.subject is required). */
const UNKNOWN_PATIENT = {
  extension: [{ url: SYSTEMS.dataAbsentReason, valueCode: 'unknown' }],
  display: 'Patient not identified by the sending system',
};

function patientReference(patientId: string | null, options: FhirMappingOptions): Record<string, unknown> | null {
  if (!patientId) return null;
  // A logical reference: the patient lives in the EHR, this server holds no Patient resources.
  return { type: 'Patient', identifier: { ...(options.patientIdSystem ? { system: options.patientIdSystem } : {}), value: patientId } };
}

function accessionIdentifier(accession: string, options: FhirMappingOptions): Record<string, unknown> {
  return { type: { coding: [ACCESSION_TYPE] }, ...(options.accessionSystem ? { system: options.accessionSystem } : {}), value: accession };
}

function probability(value: number): Record<string, unknown> {
  return { value, unit: 'probability', system: SYSTEMS.ucum, code: '1' };
}

function maxNote(finding: StudyFinding, contributing: number): string {
  return contributing > 1
    ? `Maximum over ${contributing} frontal images of the study; highest in image ${finding.imageId}.`
    : `From image ${finding.imageId}.`;
}

function conclusionText(findings: readonly StudyFinding[], model: ModelInfo | null, contributing: number, images: number, analysed: boolean): string {
  if (!analysed) return `No image of this study could be analysed by the AI model (${images} image(s) received). Not a radiologist's report.`;
  const positives = findings.filter((f) => f.positive);
  const found =
    positives.length === 0
      ? 'no ChestX-ray14 finding above its decision threshold'
      : `positive for ${positives.map((f) => `${f.label} (${f.probability.toFixed(2)})`).join(', ')}`;
  const by = model ? `${model.name} ${model.version}` : 'the AI model';
  const provenance = model ? ` ${modelNote(model)}` : '';
  return `AI-generated (${by}), ${contributing} of ${images} image(s) analysed: ${found}. Preliminary, not reviewed by a radiologist.${provenance}`;
}

/** XHTML narrative (dom-6): generated from the same data as the structured elements. */
function narrative(body: string): { status: 'generated'; div: string } {
  return { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${body}</div>` };
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * One study as a FHIR transaction Bundle for integration engines (the thorax.fhir.v1 topic):
 * PUT of the DiagnosticReport, its Observations, the ImagingStudy stub and the Device, so
 * applying it twice leaves the receiving server as applying it once.
 */
export function studyBundle(resources: StudyResources, baseUrl: string | undefined): FhirResource {
  const all = [resources.report, ...resources.observations, resources.imagingStudy, ...(resources.device ? [resources.device] : [])];
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    timestamp: resources.report.meta?.lastUpdated,
    entry: all.map((resource) => ({
      ...(baseUrl ? { fullUrl: `${baseUrl}/${resource.resourceType}/${resource.id}` } : {}),
      resource,
      request: { method: 'PUT', url: `${resource.resourceType}/${resource.id}` },
    })),
  };
}
