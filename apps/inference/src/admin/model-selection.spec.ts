import { loadConfig } from '@thorax/config';
import { inferenceConfigSchema } from '../config';
import {
  applyControlRecord,
  changedKeys,
  controlRecord,
  ControlRecordError,
  isValidVersion,
  type ModelSelection,
  parseControlRecord,
  sameSelection,
  selectionFromConfig,
} from './model-selection';

const defaults: ModelSelection = { primary: null, canary: { version: '1.0.0', percent: 10 }, shadow: null };
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('model selection', () => {
  it('starts from the INFERENCE_* variables', () => {
    expect(selectionFromConfig(loadConfig(inferenceConfigSchema, {}))).toEqual({ primary: null, canary: null, shadow: null });
    const config = loadConfig(inferenceConfigSchema, {
      INFERENCE_MODEL_VERSION: '2.0.0',
      INFERENCE_CANARY_VERSION: '3.0.0',
      INFERENCE_CANARY_PERCENT: '25',
      INFERENCE_SHADOW_VERSION: '4.0.0',
    });
    expect(selectionFromConfig(config)).toEqual({ primary: '2.0.0', canary: { version: '3.0.0', percent: 25 }, shadow: '4.0.0' });
    expect(config.INFERENCE_CONTROL_TOPIC).toBe('thorax.inference.control.v1');
  });

  it('round-trips each setting through a control record', () => {
    const next: ModelSelection = { primary: '2.0.0', canary: { version: '3.0.0', percent: 5 }, shadow: '4.0.0' };
    let s: ModelSelection = defaults;
    for (const key of ['primary', 'canary', 'shadow'] as const) {
      const record = controlRecord(key, next, 'ops@example', new Date('2026-11-30T12:00:00Z'));
      const parsed = parseControlRecord(key, json(record));
      expect(parsed.record).toMatchObject({ schema: 'thorax.inference.control.v1', by: 'ops@example', updatedAt: '2026-11-30T12:00:00.000Z' });
      s = applyControlRecord(s, defaults, parsed.key, parsed.record);
    }
    expect(s).toEqual(next);
  });

  it('clears with a null version and restores the default on a tombstone', () => {
    const cleared = applyControlRecord(defaults, defaults, 'canary', parseControlRecord('canary', json(controlRecord('canary', { ...defaults, canary: null }, null))).record);
    expect(cleared.canary).toBeNull();
    expect(applyControlRecord(cleared, defaults, 'canary', parseControlRecord('canary', null).record).canary).toEqual({ version: '1.0.0', percent: 10 });
    const latest = applyControlRecord({ ...defaults, primary: '2.0.0' }, defaults, 'primary', parseControlRecord('primary', json(controlRecord('primary', defaults, null))).record);
    expect(latest.primary).toBeNull();
  });

  it('refuses malformed records', () => {
    const ok = { schema: 'thorax.inference.control.v1', version: '1.0.0', percent: 5, updatedAt: '', by: null };
    expect(() => parseControlRecord('weights', json(ok))).toThrow(ControlRecordError);
    expect(() => parseControlRecord('primary', Buffer.from('{'))).toThrow(/not JSON/);
    expect(() => parseControlRecord('primary', json({ ...ok, schema: 'other' }))).toThrow(/schema/);
    expect(() => parseControlRecord('primary', json({ ...ok, version: '../etc' }))).toThrow(/invalid version/);
    expect(() => parseControlRecord('canary', json({ ...ok, percent: 101 }))).toThrow(/percent/);
  });

  it('accepts version directory names only', () => {
    expect(['2026.11.30-3', '1.0.0', 'v2_rc+1'].map(isValidVersion)).toEqual([true, true, true]);
    expect(['', '.', '..', 'a/b', 'a\\b', 'x'.repeat(129), 3].map(isValidVersion)).toEqual([false, false, false, false, false, false, false]);
  });

  it('compares selections and names the settings that changed', () => {
    const a: ModelSelection = { primary: '1', canary: { version: '2', percent: 5 }, shadow: null };
    expect(sameSelection(a, { ...a, canary: { version: '2', percent: 5 } })).toBe(true);
    expect(changedKeys(a, { ...a, canary: { version: '2', percent: 6 } })).toEqual(['canary']);
    expect(changedKeys(a, { primary: null, canary: null, shadow: '3' })).toEqual(['primary', 'canary', 'shadow']);
  });
});
