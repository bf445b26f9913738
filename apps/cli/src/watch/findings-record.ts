import { assertFindingsEvent, type FindingsEvent } from '@thorax/contracts';

/** A findings record's value as an event; null for anything that is not a valid thorax.findings.v1 event. */
export function parseFindingsRecord(value: Buffer | null): FindingsEvent | null {
  if (!value) return null;
  try {
    const parsed: unknown = JSON.parse(value.toString('utf8'));
    assertFindingsEvent(parsed);
    return parsed;
  } catch {
    return null;
  }
}
