/**
 * Reference comparison: every DICOM file shipped in pydicom's wheel (pydicom/data/test_files)
 * and every DICOM fixture of this repository is decoded by this library and by pydicom +
 * pylibjpeg (tools/dicom-reference, pinned; `bash scripts/dicom-reference.sh setup`). Per file
 * the outcome (both decode / we refuse with a code / they refuse / neither) and the largest
 * difference are printed; the test fails on a wrong image, on a crash (an error without a
 * Thorax code), and on a refusal that is not in the list below.
 *
 * Compared (first frame, before any VOI or wire resize): monochrome stored values, colour
 * luma on 0..255 (uncompressed and RLE YBR: the Y plane on both sides). Stated tolerances:
 * lossless transfer syntaxes 0 stored levels (monochrome) and 1 grey level (colour); lossy ones
 * (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000, HTJ2K) 1 % of the stored range
 * (different IDCT/wavelet implementations may round differently) and 3 grey levels for colour.
 */
import { ThoraxError } from '@thorax/contracts';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseDicomFile } from './dicom';
import { decodeFirstFrame, dicomToGrey } from './dicom-pixels';
import { DEFAULT_WIRE_OPTIONS } from './wire-image';

jest.setTimeout(300_000);

const ROOT = path.resolve(__dirname, '../../..');
const SCRIPT = path.join(ROOT, 'scripts/dicom-reference.sh');
const LOSSY = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.203']);

/**
 * Files this library refuses with a code although pydicom decodes them, and why (docs/imaging.md).
 * Anything else it refuses where pydicom decodes fails the test.
 */
const EXPECTED_REFUSALS: Record<string, string> = {
  // 12-bit lossy JPEG (process 4): no offline decoder for Node.
  'pydicom:JPGExtended.dcm': 'UNSUPPORTED_TRANSFER_SYNTAX',
  // Written in implicit VR under an explicit VR transfer syntax; pydicom guesses, dicom-parser does not.
  'pydicom:SC_rgb_jpeg.dcm': 'CORRUPT_IMAGE',
  // 32 bits allocated (RT dose grids, 32-bit RGB): Thorax reads 8 and 16.
  'pydicom:SC_rgb_rle_32bit.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:SC_rgb_rle_32bit_2frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose_1frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose_expb.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose_expb_1frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose_rle.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:rtdose_rle_1frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  // 1 bit allocated (a binary segmentation): not a radiograph.
  'pydicom:liver_1frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
  'pydicom:liver_expb_1frame.dcm': 'UNSUPPORTED_PIXEL_FORMAT',
};

interface Reference {
  file: string;
  outcome: 'ok' | 'refused';
  error?: string;
  kind?: 'monochrome' | 'colour';
  rows?: number;
  columns?: number;
  bitsStored?: number;
  transferSyntax?: string;
}

interface Row {
  label: string;
  outcome: 'both decode' | 'we refuse' | 'they refuse' | 'neither';
  detail: string;
  max: number | null;
  tolerance: number | null;
}

function dicomFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.dcm'))
    .map((e) => path.join(e.parentPath, e.name))
    .sort();
}

type Ours = { ok: true; plane: ArrayLike<number>; transferSyntax: string } | { ok: false; code: string; crash?: string };

async function decodeOurs(file: string, kind: 'monochrome' | 'colour' | undefined): Promise<Ours> {
  const limits = { maxPixels: DEFAULT_WIRE_OPTIONS.maxInputPixels, maxFrames: DEFAULT_WIRE_OPTIONS.maxFrames, timeoutSeconds: 30 };
  try {
    const parsed = parseDicomFile(readFileSync(file), { maxInflatedBytes: DEFAULT_WIRE_OPTIONS.maxInflatedBytes }, { untilPixelData: false, stage: 'preprocess' });
    const monochrome = parsed.info.photometricInterpretation.startsWith('MONOCHROME');
    if (kind === 'colour' || (!kind && !monochrome)) {
      return { ok: true, plane: (await dicomToGrey(parsed, limits)).grey, transferSyntax: parsed.info.transferSyntaxUid };
    }
    return { ok: true, plane: (await decodeFirstFrame(parsed, limits)).samples, transferSyntax: parsed.info.transferSyntaxUid };
  } catch (error) {
    if (error instanceof ThoraxError) return { ok: false, code: error.code };
    return { ok: false, code: 'CRASH', crash: String((error as Error)?.stack ?? error) };
  }
}

describe('reference comparison: libs/imaging vs pydicom + pylibjpeg', () => {
  const rows: Row[] = [];
  const problems: string[] = [];
  let dir = '';

  beforeAll(async () => {
    const testFiles = execFileSync('bash', [SCRIPT, 'test-files'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    const files = [
      ...dicomFiles(testFiles).map((f) => ({ file: f, label: `pydicom:${path.relative(testFiles, f)}` })),
      ...dicomFiles(path.join(ROOT, 'test/fixtures/imaging/valid')).map((f) => ({ file: f, label: path.relative(ROOT, f) })),
      ...dicomFiles(path.join(ROOT, 'test/fixtures/imaging/interop')).map((f) => ({ file: f, label: path.relative(ROOT, f) })),
    ];
    dir = mkdtempSync(path.join(tmpdir(), 'thorax-dicom-reference-'));
    execFileSync('bash', [SCRIPT, 'decode', dir, ...files.map((f) => f.file)], { stdio: ['ignore', 'inherit', 'inherit'] });
    const { results } = JSON.parse(readFileSync(path.join(dir, 'results.json'), 'utf8')) as { results: Reference[] };
    for (const [n, { file, label }] of files.entries()) {
      const ref = results[n] as Reference;
      const ours = await decodeOurs(file, ref.outcome === 'ok' ? ref.kind : undefined);
      if (!ours.ok && ours.crash) problems.push(`${label}: crashed: ${ours.crash}`);
      if (ref.outcome !== 'ok') {
        rows.push({ label, outcome: ours.ok ? 'they refuse' : 'neither', detail: `${ours.ok ? '' : `${ours.code}; `}pydicom: ${ref.error}`, max: null, tolerance: null });
        continue;
      }
      if (!ours.ok) {
        rows.push({ label, outcome: 'we refuse', detail: ours.code, max: null, tolerance: null });
        if (EXPECTED_REFUSALS[label] !== ours.code && ours.code !== 'CRASH') problems.push(`${label}: refused with ${ours.code}, pydicom decodes it`);
        continue;
      }
      const raw = readFileSync(path.join(dir, `${n}.f32`));
      const theirs = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const pixels = (ref.rows as number) * (ref.columns as number);
      const lossy = LOSSY.has(ours.transferSyntax);
      const colour = ref.kind === 'colour';
      const tolerance = colour ? (lossy ? 3 : 1) : lossy ? Math.max(1, Math.round(0.01 * (2 ** (ref.bitsStored as number) - 1))) : 0;
      let max = 0;
      if (ours.plane.length < pixels) max = Number.POSITIVE_INFINITY;
      else for (let i = 0; i < pixels; i += 1) max = Math.max(max, Math.abs((ours.plane[i] as number) - (theirs[i] as number)));
      rows.push({ label, outcome: 'both decode', detail: `${ref.kind} ${ours.transferSyntax}`, max: Math.round(max * 100) / 100, tolerance });
      if (!(max <= tolerance)) problems.push(`${label}: differs by ${max} (tolerance ${tolerance})`);
    }
    const width = Math.max(...rows.map((r) => r.label.length));
    const table = rows.map((r) =>
      `${r.label.padEnd(width)}  ${r.outcome.padEnd(11)}  ${r.max === null ? '' : `max ${r.max} (≤ ${r.tolerance})`.padEnd(20)}  ${r.detail}`,
    );
    process.stdout.write(`\nreference comparison (pydicom + pylibjpeg), ${rows.length} files\n${table.join('\n')}\n`);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('decodes no file to a wrong image and crashes on none', () => {
    expect(problems).toEqual([]);
  });

  it('compares a real corpus: at least 60 files both decode, every repository fixture among them', () => {
    expect(rows.filter((r) => r.outcome === 'both decode').length).toBeGreaterThanOrEqual(60);
    expect(rows.filter((r) => r.label.startsWith('test/') && r.outcome !== 'both decode')).toEqual([]);
  });
});
