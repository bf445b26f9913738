/**
 * Parity with training: every valid fixture (PNG 8/16-bit, palette, alpha, JPEG incl. progressive
 * and EXIF-rotated, DICOM in every supported transfer syntax and photometric interpretation) goes
 * through this library and through apps/trainer's Python (thorax_trainer.wire.load_wire, with
 * pydicom + pylibjpeg + Pillow decoding and pyvips resizing); the 8-bit wire images may differ by
 * at most one grey level per pixel. Both sides resize with libvips, so both must load the same
 * libvips release. Needs the trainer venv (`bash scripts/trainer.sh setup`; `npm test` makes it first).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DEFAULT_WIRE_OPTIONS, toWireImage, WIRE_PREPROCESSING } from './wire-image';

jest.setTimeout(180_000);

const ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(ROOT, 'test/fixtures/imaging');
const PYTHON = path.join(ROOT, 'apps/trainer/.venv/bin/python');
/** The stated tolerance: at most one grey level per pixel. */
const TOLERANCE = 1;

const manifest = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8')) as { valid: { file: string; name: string }[] };
/** Real photographs (test/fixtures/imaging/real.py): texture, edges, noise and JPEG blocks. */
const real = JSON.parse(readFileSync(path.join(FIXTURES, 'real/manifest.json'), 'utf8')) as { real: { file: string; what: string }[] };
const cases = [...manifest.valid, ...real.real.map((r) => ({ file: `real/${r.file}`, name: `real photograph: ${r.file} (${r.what})` }))];

const PY = `
import sys
from pathlib import Path
from thorax_trainer.wire import load_wire
out = Path(sys.argv[1])
for name in sys.argv[2:]:
    load_wire(Path(name)).tofile(out / (Path(name).name + ".u8"))
`;

describe('wire image parity: TypeScript preprocess vs trainer Python', () => {
  const results: { file: string; max: number; differing: number }[] = [];
  let dir = '';

  beforeAll(() => {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} missing: run \`bash scripts/trainer.sh setup\` first`);
    dir = mkdtempSync(path.join(tmpdir(), 'thorax-parity-'));
    writeFileSync(path.join(dir, 'wire.py'), PY);
    execFileSync(PYTHON, [path.join(dir, 'wire.py'), dir, ...cases.map((v) => path.join(FIXTURES, v.file))], {
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 150_000,
    });
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    // A figure for the log: how close the two sides are over the whole corpus.
    const worst = results.reduce((m, r) => Math.max(m, r.max), 0);
    const pixels = results.reduce((m, r) => m + r.differing, 0);
    for (const r of results.filter((x) => x.differing > 0)) process.stdout.write(`[parity] ${r.file}: max ${r.max}, ${r.differing} pixels differ\n`);
    process.stdout.write(`[parity] ${results.length} files (fixtures and real photographs), max |ts - py| = ${worst}, pixels differing: ${pixels} of ${results.length * 65536}\n`);
  });

  it.each(cases.map((v) => [v.name, v.file] as const))('%s', async (_name, file) => {
    const ts = await toWireImage(readFileSync(path.join(FIXTURES, file)), DEFAULT_WIRE_OPTIONS);
    const py = readFileSync(path.join(dir, `${path.basename(file)}.u8`));
    expect(py.length).toBe(ts.pixels.length);
    let max = 0;
    let differing = 0;
    for (let i = 0; i < py.length; i += 1) {
      const d = Math.abs((py[i] as number) - (ts.pixels[i] as number));
      if (d > 0) differing += 1;
      if (d > max) max = d;
    }
    results.push({ file, max, differing });
    expect({ file, max }).toEqual({ file, max: Math.min(max, TOLERANCE) });
  });

  it('resizes with the same libvips release on both sides (sharp and pyvips)', () => {
    const py = execFileSync(PYTHON, ['-c', 'import pyvips; print(".".join(str(pyvips.version(i)) for i in range(3)))'], { encoding: 'utf8' }).trim();
    expect(py).toBe(sharp.versions.vips);
  });

  it('names the same recipe on both sides (PreprocessedImage and the model metadata)', () => {
    const py = execFileSync(PYTHON, ['-c', 'from thorax_trainer.contract import WIRE_RECIPE; print(WIRE_RECIPE)'], { encoding: 'utf8' }).trim();
    expect(py).toBe(WIRE_PREPROCESSING);
  });

  it('covers PNG 8/16-bit, JPEG, raw and compressed DICOM and MONOCHROME1', () => {
    const files = manifest.valid.map((v) => v.file);
    for (const needed of ['grey8.png', 'grey16.png', 'grey.jpg', 'progressive.jpg', 'mono2-explicit-le-window.dcm', 'mono1-explicit-le.dcm',
      'rle-mono1.dcm', 'jpeg-baseline-mono8.dcm', 'jpeg-lossless-sv1.dcm', 'jpeg-ls-lossless.dcm', 'j2k-lossless.dcm']) {
      expect(files).toContain(`valid/${needed}`);
    }
  });
});
