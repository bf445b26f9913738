import path from 'node:path';
import { REPO_ROOT } from './processes';

/**
 * The slow test model (libs/model-runtime/fixtures/make_slow_model.py): a batch loops 20,000
 * times per grey level of the brightest first pixel among its images; an all-zero batch answers
 * at once. How long a level takes depends on the CPU (about 60 ms per level on one machine of
 * the CI kind, 15 ms on another), so tests that need a batch to outrun a timeout calibrate.
 */
export const SLOW_MODEL_DIR = path.join(REPO_ROOT, 'libs', 'model-runtime', 'fixtures', 'slow-model');

/** A 256² grey image whose first pixel is `level`: the slow model's run-time knob. */
export function slowImage(level: number): Uint8Array {
  const pixels = new Uint8Array(256 * 256);
  pixels[0] = level;
  return pixels;
}

const PROBE_LEVEL = 4;

/**
 * The first-pixel level at which one run of the slow model takes about `targetMs` on this
 * machine now, measured with `classify` (an in-process session of the slow model): the
 * median of three probe runs at a low level, scaled. Throws if even level 255 would fall
 * short of `targetMs / 2`, rather than letting a timeout test pass or fail by the CPU's speed.
 */
export async function slowModelLevel(
  classify: (batch: Uint8Array[]) => Promise<unknown>,
  targetMs: number,
): Promise<number> {
  await classify([slowImage(0)]);
  const runs: number[] = [];
  for (let i = 0; i < 3; i += 1) {
    const started = performance.now();
    await classify([slowImage(PROBE_LEVEL)]);
    runs.push(performance.now() - started);
  }
  const perLevelMs = (runs.sort((a, b) => a - b)[1] ?? 0) / PROBE_LEVEL;
  const level = Math.ceil(targetMs / Math.max(perLevelMs, 1e-3));
  if (level > 255 && 255 * perLevelMs < targetMs / 2) {
    throw new Error(
      `the slow model runs ${perLevelMs.toFixed(2)} ms per level here: even level 255 takes ` +
        `${(255 * perLevelMs).toFixed(0)} ms, under half of ${targetMs} ms; regenerate it with more iterations per level`,
    );
  }
  return Math.min(255, Math.max(1, level));
}
