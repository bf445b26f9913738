import { createHash } from 'node:crypto';

/**
 * Stable FHIR ids (`[A-Za-z0-9\-.]{1,64}`) derived from what identifies a thing, so every replica
 * and every rebuild of the store names a study's resources the same way. Study Instance UIDs can
 * be 64 characters and other study keys any string, hence a digest rather than the UID itself.
 */
function digest(kind: string, value: string): string {
  return createHash('sha256').update(`thorax:${kind}:`).update(value, 'utf8').digest('hex').slice(0, 32);
}

/** Id of a study's DiagnosticReport and ImagingStudy; its Observations append the label. */
export function studyResourceId(studyUid: string): string {
  return digest('study', studyUid);
}

/** Id of the Device that stands for one model version. */
export function deviceResourceId(modelName: string, modelVersion: string): string {
  return digest('model', `${modelName}\n${modelVersion}`);
}

/** Observation id of one label of a study: `<study id>-<label in lower case, _ as ->`. */
export function observationResourceId(studyId: string, label: string): string {
  return `${studyId}-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
}
