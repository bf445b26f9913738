import { ThoraxError } from '@thorax/contracts';
import { checkGates, type IntakeOptions, isSupportedTransferSyntax, parseDicomFile } from '@thorax/imaging';
import { isAcceptedStorageClass } from './storage-classes';

/**
 * Why an edge refused one instance, answered synchronously to the sender: the C-STORE status, or
 * the STOW-RS FailureReason (00081197), which uses the same PS3.4 storage codes.
 */
export const FAILURE = {
  /** 0x0110 Processing failure: an unexpected fault on our side. */
  processing: 0x0110,
  /** 0x0122 SOP Class not supported. */
  sopClassNotSupported: 0x0122,
  /** 0xA700 Refused: out of resources (too large, or the pipeline could not take it now: retry). */
  outOfResources: 0xa700,
  /** 0xA900 Data Set does not match SOP Class (also: a STOW-RS instance of another study than its URL). */
  doesNotMatch: 0xa900,
  /** 0xC000 Cannot understand: the header does not parse, or fails a clinical gate. */
  cannotUnderstand: 0xc000,
  /** 0xC122 Referenced Transfer Syntax not supported (STOW-RS only; DIMSE refuses it at negotiation). */
  transferSyntaxNotSupported: 0xc122,
} as const;

export type FailureReason = (typeof FAILURE)[keyof typeof FAILURE];

/** One refused instance: a status for the sender, a short reason for the audit log (no patient data). */
export class InstanceRefused extends Error {
  constructor(
    readonly status: FailureReason,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** The identifiers of an accepted instance (UIDs only; never logged with the patient's data). */
export interface CheckedInstance {
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  transferSyntaxUid: string;
}

const DEFLATED = '1.2.840.10008.1.2.1.99';

/**
 * The synchronous header checks an edge makes before it hands an instance on: the header parses
 * (Pixel Data not read), the SOP class is one Thorax takes, the transfer syntax is one the decoder
 * reads, the clinical gates of ingest pass (the same `checkGates` the studies consumer applies).
 * `header` is a Part 10 file or its first bytes; `expected` is what the transport declared.
 */
export function checkInstance(
  header: Uint8Array,
  intake: IntakeOptions,
  expected: { sopClassUid?: string; sopInstanceUid?: string; studyInstanceUid?: string } = {},
): CheckedInstance {
  let parsed: ReturnType<typeof parseDicomFile>;
  try {
    parsed = parseDicomFile(header, { maxInflatedBytes: intake.maxInflatedBytes }, { untilPixelData: true, stage: 'ingest' });
  } catch (error) {
    if (error instanceof ThoraxError && error.code === 'PAYLOAD_TOO_LARGE') throw new InstanceRefused(FAILURE.outOfResources, error.message);
    throw new InstanceRefused(FAILURE.cannotUnderstand, error instanceof ThoraxError ? error.message : 'header does not parse');
  }
  const { info, dataSet } = parsed;
  const sopClassUid = readUid(dataSet, 'x00080016');
  if (!sopClassUid || !info.sopInstanceUid || !info.studyInstanceUid) {
    throw new InstanceRefused(FAILURE.cannotUnderstand, 'SOP Class, SOP Instance or Study Instance UID missing');
  }
  if (expected.sopClassUid !== undefined && expected.sopClassUid !== sopClassUid) {
    throw new InstanceRefused(FAILURE.doesNotMatch, `dataset SOP Class ${sopClassUid} is not the declared ${expected.sopClassUid}`);
  }
  if (!isAcceptedStorageClass(sopClassUid)) throw new InstanceRefused(FAILURE.sopClassNotSupported, `SOP Class ${sopClassUid} is not accepted`);
  if (expected.sopInstanceUid !== undefined && expected.sopInstanceUid !== info.sopInstanceUid) {
    throw new InstanceRefused(FAILURE.doesNotMatch, 'dataset SOP Instance UID is not the declared one');
  }
  if (expected.studyInstanceUid !== undefined && expected.studyInstanceUid !== info.studyInstanceUid) {
    throw new InstanceRefused(FAILURE.doesNotMatch, 'instance belongs to another study than the request URL');
  }
  if (!isSupportedTransferSyntax(info.transferSyntaxUid)) {
    throw new InstanceRefused(FAILURE.transferSyntaxNotSupported, `transfer syntax ${info.transferSyntaxUid} is not decoded`);
  }
  try {
    checkGates(info, intake);
  } catch (error) {
    throw new InstanceRefused(FAILURE.cannotUnderstand, error instanceof ThoraxError ? `${error.code}: ${error.message}` : 'refused by a gate');
  }
  return { sopClassUid, sopInstanceUid: info.sopInstanceUid, studyInstanceUid: info.studyInstanceUid, transferSyntaxUid: info.transferSyntaxUid };
}

/** A deflated dataset parses only whole; others parse from their first bytes. */
export function needsWholeInstance(transferSyntaxUid: string): boolean {
  return transferSyntaxUid === DEFLATED;
}

function readUid(dataSet: { string(tag: string): string | undefined }, tag: string): string {
  try {
    return (dataSet.string(tag) ?? '').replace(/\0/g, '').trim();
  } catch {
    return '';
  }
}

/** The status for a failure while handing an accepted instance on (after the checks passed). */
export function submitFailure(error: unknown): InstanceRefused {
  if (error instanceof InstanceRefused) return error;
  if (error instanceof ThoraxError) {
    if (error.code === 'PAYLOAD_TOO_LARGE') return new InstanceRefused(FAILURE.outOfResources, error.message);
    if (error.transient) return new InstanceRefused(FAILURE.outOfResources, `${error.code}: the pipeline could not take the instance now`);
    return new InstanceRefused(FAILURE.cannotUnderstand, `${error.code}: ${error.message}`);
  }
  return new InstanceRefused(FAILURE.outOfResources, 'the pipeline could not take the instance now');
}
