import type { InferenceConfig } from '../config';

/** Which model versions inference serves, in every replica. */
export interface ModelSelection {
  /** The pinned primary version; null: the highest version in MODEL_DIR, hot-swapped forward. */
  primary: string | null;
  /** A canary version and the share of images (0-100, by a hash of the image id) it answers. */
  canary: { version: string; percent: number } | null;
  /** A version that also runs on every image; its findings go to the shadow topic only. */
  shadow: string | null;
}

/** The keys of the control topic: one compacted record per setting, so changes to different settings never overwrite each other. */
export const CONTROL_KEYS = ['primary', 'canary', 'shadow'] as const;
export type ControlKey = (typeof CONTROL_KEYS)[number];

export const CONTROL_SCHEMA = 'thorax.inference.control.v1';

/** The value of one control record (UTF-8 JSON). */
export interface ControlRecord {
  schema: typeof CONTROL_SCHEMA;
  /** null clears the setting (primary: back to the highest version). */
  version: string | null;
  /** Canary only. */
  percent?: number;
  updatedAt: string;
  /** Token subject of whoever made the change, or null when API auth is off. */
  by: string | null;
}

/** The starting selection: the INFERENCE_* variables (what a replica serves until the control topic says otherwise). */
export function selectionFromConfig(config: InferenceConfig): ModelSelection {
  return {
    primary: config.INFERENCE_MODEL_VERSION || null,
    canary: config.INFERENCE_CANARY_VERSION
      ? { version: config.INFERENCE_CANARY_VERSION, percent: config.INFERENCE_CANARY_PERCENT }
      : null,
    shadow: config.INFERENCE_SHADOW_VERSION || null,
  };
}

/** A version directory name as accepted by the admin API: no path separators, no dot-only names. */
export const VERSION_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9._+-]{1,128}$/;

export function isValidVersion(value: unknown): value is string {
  return typeof value === 'string' && VERSION_PATTERN.test(value);
}

/** The control record for one setting of a selection. */
export function controlRecord(key: ControlKey, selection: ModelSelection, by: string | null, now = new Date()): ControlRecord {
  const base = { schema: CONTROL_SCHEMA, updatedAt: now.toISOString(), by } as const;
  if (key === 'canary') {
    return selection.canary ? { ...base, version: selection.canary.version, percent: selection.canary.percent } : { ...base, version: null, percent: 0 };
  }
  return { ...base, version: key === 'primary' ? selection.primary : selection.shadow };
}

export class ControlRecordError extends Error {}

/** Parses a control record (key and JSON value); throws ControlRecordError on anything malformed. */
export function parseControlRecord(key: string | null, value: Buffer | null): { key: ControlKey; record: ControlRecord | null } {
  if (!CONTROL_KEYS.includes(key as ControlKey)) throw new ControlRecordError(`unknown control key ${JSON.stringify(key)}`);
  const k = key as ControlKey;
  if (value === null) return { key: k, record: null };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch {
    throw new ControlRecordError(`control record ${k} is not JSON`);
  }
  const r = parsed as Partial<ControlRecord> | null;
  if (typeof r !== 'object' || r === null || r.schema !== CONTROL_SCHEMA) throw new ControlRecordError(`control record ${k}: schema must be ${CONTROL_SCHEMA}`);
  if (r.version !== null && !isValidVersion(r.version)) throw new ControlRecordError(`control record ${k}: invalid version`);
  if (k === 'canary' && r.version !== null && !(typeof r.percent === 'number' && r.percent >= 0 && r.percent <= 100)) {
    throw new ControlRecordError('control record canary: percent must be a number from 0 to 100');
  }
  return {
    key: k,
    record: {
      schema: CONTROL_SCHEMA,
      version: r.version ?? null,
      ...(k === 'canary' ? { percent: r.percent ?? 0 } : {}),
      updatedAt: typeof r.updatedAt === 'string' ? r.updatedAt : '',
      by: typeof r.by === 'string' ? r.by : null,
    },
  };
}

/** The selection after one control record: a tombstone (record null) restores the configured default of that setting. */
export function applyControlRecord(current: ModelSelection, defaults: ModelSelection, key: ControlKey, record: ControlRecord | null): ModelSelection {
  switch (key) {
    case 'primary':
      return { ...current, primary: record ? record.version : defaults.primary };
    case 'shadow':
      return { ...current, shadow: record ? record.version : defaults.shadow };
    case 'canary':
      if (!record) return { ...current, canary: defaults.canary };
      return { ...current, canary: record.version ? { version: record.version, percent: record.percent ?? 0 } : null };
  }
}

export function sameSelection(a: ModelSelection, b: ModelSelection): boolean {
  return (
    a.primary === b.primary &&
    a.shadow === b.shadow &&
    (a.canary === b.canary || (a.canary !== null && b.canary !== null && a.canary.version === b.canary.version && a.canary.percent === b.canary.percent))
  );
}

/** Which settings differ between two selections. */
export function changedKeys(from: ModelSelection, to: ModelSelection): ControlKey[] {
  const keys: ControlKey[] = [];
  if (from.primary !== to.primary) keys.push('primary');
  if (!sameSelection({ ...from, primary: null, shadow: null }, { ...to, primary: null, shadow: null })) keys.push('canary');
  if (from.shadow !== to.shadow) keys.push('shadow');
  return keys;
}
