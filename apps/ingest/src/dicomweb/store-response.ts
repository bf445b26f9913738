/** One instance in a STOW-RS store response: its UIDs (when they could be read) and, when refused, why. */
export interface StoreOutcome {
  sopClassUid: string | null;
  sopInstanceUid: string | null;
  /** PS3.4 storage status of a refused instance (FailureReason 00081197); absent when stored. */
  failureReason?: number;
}

type JsonAttribute = { vr: string; Value?: unknown[] };
export type DicomJson = Record<string, JsonAttribute>;

function uid(value: string | null): JsonAttribute {
  return value ? { vr: 'UI', Value: [value] } : { vr: 'UI' };
}

/**
 * The Store Instances Response Module (PS3.18 10.5.3, PS3.4 Table CC.2.3-1) in the DICOM JSON
 * model (PS3.18 F.2): ReferencedSOPSequence (00081199) for what was stored, FailedSOPSequence
 * (00081198) with FailureReason (00081197) for what was not. No RetrieveURL: Thorax does not
 * serve WADO-RS.
 */
export function storeResponse(outcomes: readonly StoreOutcome[]): DicomJson {
  const item = (o: StoreOutcome): DicomJson => ({ '00081150': uid(o.sopClassUid), '00081155': uid(o.sopInstanceUid) });
  const stored = outcomes.filter((o) => o.failureReason === undefined);
  const failed = outcomes.filter((o) => o.failureReason !== undefined);
  const body: DicomJson = {};
  if (failed.length > 0) {
    body['00081198'] = { vr: 'SQ', Value: failed.map((o) => ({ ...item(o), '00081197': { vr: 'US', Value: [o.failureReason] } })) };
  }
  if (stored.length > 0) body['00081199'] = { vr: 'SQ', Value: stored.map(item) };
  return body;
}

/** 200 all stored, 202 some stored and some failed, 409 none stored (PS3.18 10.5.3.1). */
export function storeStatus(outcomes: readonly StoreOutcome[]): 200 | 202 | 409 {
  const stored = outcomes.filter((o) => o.failureReason === undefined).length;
  if (stored === 0) return 409;
  return stored === outcomes.length ? 200 : 202;
}
