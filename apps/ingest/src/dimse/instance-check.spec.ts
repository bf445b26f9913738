import { ThoraxError } from '@thorax/contracts';
import { DEFAULT_INTAKE_OPTIONS, parseDicomFile } from '@thorax/imaging';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { checkInstance, FAILURE, InstanceRefused, submitFailure } from './instance-check';
import { part10Header } from './part10';

const FIXTURES = path.join(__dirname, '..', '..', '..', '..', 'test', 'fixtures', 'imaging');
const file = (name: string) => readFileSync(path.join(FIXTURES, name));
const DX = '1.2.840.10008.5.1.4.1.1.1.1';
const SOP = '1.2.826.0.1.3680043.8.498.4.3.8';

/** The dataset of a Part 10 file without its preamble and File Meta group, as it arrives over DIMSE. */
function datasetOf(part10: Buffer): Buffer {
  const metaLength = part10.readUInt32LE(132 + 8);
  return part10.subarray(132 + 12 + metaLength);
}

function refusal(run: () => unknown): number | null {
  try {
    run();
    return null;
  } catch (error) {
    if (!(error instanceof InstanceRefused)) throw error;
    return error.status;
  }
}

describe('part10Header', () => {
  it('turns a network dataset back into a Part 10 file the decoder reads', () => {
    const original = file('valid/mono2-8bit.dcm');
    const rebuilt = Buffer.concat([part10Header({ sopClassUid: DX, sopInstanceUid: SOP, transferSyntaxUid: '1.2.840.10008.1.2.1', sourceAeTitle: 'PACS' }), datasetOf(original)]);
    const { info, dataSet } = parseDicomFile(rebuilt, DEFAULT_INTAKE_OPTIONS, { untilPixelData: false, stage: 'ingest' });
    expect(info).toMatchObject({ transferSyntaxUid: '1.2.840.10008.1.2.1', sopInstanceUid: SOP, hasPixelData: true });
    expect(dataSet.string('x00020016')).toBe('PACS');
    expect(dataSet.string('x00020002')?.replace(/\0/g, '')).toBe(DX);
    // Group length covers exactly the meta elements after it.
    expect(rebuilt.readUInt32LE(140)).toBe(rebuilt.indexOf(datasetOf(original)) - 144);
  });
});

describe('checkInstance', () => {
  const intake = DEFAULT_INTAKE_OPTIONS;

  it('accepts a chest DX and returns its UIDs', () => {
    expect(checkInstance(file('valid/mono2-8bit.dcm'), intake, { sopClassUid: DX, sopInstanceUid: SOP })).toMatchObject({ sopClassUid: DX, sopInstanceUid: SOP });
  });

  it('maps each refusal to its storage status', () => {
    const dx = file('valid/mono2-8bit.dcm');
    expect(refusal(() => checkInstance(Buffer.from('not DICOM at all'), intake))).toBe(FAILURE.cannotUnderstand);
    expect(refusal(() => checkInstance(dx, intake, { sopClassUid: '1.2.840.10008.5.1.4.1.1.2' }))).toBe(FAILURE.doesNotMatch);
    expect(refusal(() => checkInstance(dx, intake, { sopInstanceUid: '1.2.3' }))).toBe(FAILURE.doesNotMatch);
    expect(refusal(() => checkInstance(dx, intake, { studyInstanceUid: '1.2.3' }))).toBe(FAILURE.doesNotMatch);
    expect(refusal(() => checkInstance(file('hostile/view-ll.dcm'), intake))).toBe(FAILURE.cannotUnderstand);
  });

  it('answers "try again" for what the pipeline could not take now', () => {
    expect(submitFailure(new ThoraxError('INTERNAL_ERROR', 'broker', { transient: true })).status).toBe(FAILURE.outOfResources);
    expect(submitFailure(new ThoraxError('PAYLOAD_TOO_LARGE', 'big')).status).toBe(FAILURE.outOfResources);
    expect(submitFailure(new Error('anything')).status).toBe(FAILURE.outOfResources);
    expect(submitFailure(new ThoraxError('EMPTY_PAYLOAD', 'none')).status).toBe(FAILURE.cannotUnderstand);
  });
});
