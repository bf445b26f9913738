/**
 * Code systems and codes the FHIR resources use. docs/fhir.md lists them with their status: a
 * finding code is emitted only where it is reliable (checked against public terminology
 * sources); candidates still unverified stay out of the resources and are listed in the docs.
 * The NIH label is always `code.text`.
 */
export const SYSTEMS = {
  snomed: 'http://snomed.info/sct',
  loinc: 'http://loinc.org',
  ucum: 'http://unitsofmeasure.org',
  dicomUid: 'urn:dicom:uid',
  v2DiagnosticService: 'http://terminology.hl7.org/CodeSystem/v2-0074',
  v2IdentifierType: 'http://terminology.hl7.org/CodeSystem/v2-0203',
  v3ObservationValue: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
  v3Interpretation: 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation',
  observationCategory: 'http://terminology.hl7.org/CodeSystem/observation-category',
  dataAbsentReason: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason',
} as const;

export interface Coding {
  system: string;
  code: string;
  display: string;
}

/** meta.security of every AI-produced resource: "Artificial Intelligence asserted". */
export const AI_ASSERTED: Coding = { system: SYSTEMS.v3ObservationValue, code: 'AIAST', display: 'Artificial Intelligence asserted' };

export const RADIOLOGY: Coding = { system: SYSTEMS.v2DiagnosticService, code: 'RAD', display: 'Radiology' };
export const IMAGING: Coding = { system: SYSTEMS.observationCategory, code: 'imaging', display: 'Imaging' };
export const ACCESSION_TYPE: Coding = { system: SYSTEMS.v2IdentifierType, code: 'ACSN', display: 'Accession ID' };
export const POSITIVE: Coding = { system: SYSTEMS.v3Interpretation, code: 'POS', display: 'Positive' };
export const NEGATIVE: Coding = { system: SYSTEMS.v3Interpretation, code: 'NEG', display: 'Negative' };

/** LOINC report codes: one view, or two or more distinct views in the study. */
export const CHEST_XRAY_SINGLE_VIEW: Coding = { system: SYSTEMS.loinc, code: '36554-4', display: 'XR Chest Single view' };
export const CHEST_XRAY_TWO_VIEWS: Coding = { system: SYSTEMS.loinc, code: '36643-5', display: 'XR Chest 2 Views' };

export interface LabelCode {
  /** A SNOMED CT concept emitted in Observation.code.coding (reliable codes only). */
  coding: Coding | null;
  /** Candidate codes we have not verified: documented, never emitted. */
  unverified?: string;
}

/**
 * ChestX-ray14 labels → finding codes. No official mapping exists; see docs/fhir.md for the
 * sources and why each unverified candidate is left out.
 */
export const LABEL_CODES: Readonly<Record<string, LabelCode>> = {
  Atelectasis: { coding: null, unverified: 'SNOMED CT 46621007 Atelectasis' },
  Cardiomegaly: { coding: { system: SYSTEMS.snomed, code: '8186001', display: 'Cardiomegaly' } },
  Effusion: { coding: { system: SYSTEMS.snomed, code: '60046008', display: 'Pleural effusion' } },
  Infiltration: { coding: null, unverified: 'DICOM DCM 112121 Infiltrate' },
  Mass: { coding: { system: SYSTEMS.snomed, code: '4147007', display: 'Mass' } },
  Nodule: { coding: null, unverified: 'SNOMED CT 27925004 Nodule' },
  Pneumonia: { coding: { system: SYSTEMS.snomed, code: '233604007', display: 'Pneumonia' } },
  Pneumothorax: { coding: { system: SYSTEMS.snomed, code: '36118008', display: 'Pneumothorax' } },
  Consolidation: { coding: null, unverified: 'SNOMED CT 95436008 Lung consolidation' },
  Edema: { coding: null, unverified: 'SNOMED CT 19242006 Pulmonary edema' },
  Emphysema: { coding: null, unverified: 'SNOMED CT 49158009 Emphysema (morphology) or 87433001 Pulmonary emphysema' },
  Fibrosis: { coding: null, unverified: 'SNOMED CT 112674009 Fibrosis' },
  Pleural_Thickening: { coding: null },
  Hernia: { coding: null },
};

/** The CodeableConcept of a label: the reliable code when there is one, the NIH label as text. */
export function labelConcept(label: string): { coding?: Coding[]; text: string } {
  const coding = LABEL_CODES[label]?.coding;
  return coding ? { coding: [coding], text: label } : { text: label };
}
