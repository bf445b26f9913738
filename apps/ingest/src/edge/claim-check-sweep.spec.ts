import { loadConfig } from '@thorax/config';
import { FileObjectStore } from '@thorax/object-store';
import type { Logger } from '@thorax/observability';
import { mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ingestConfigSchema } from '../config';
import { ClaimCheckSweep } from './claim-check-sweep';

const quiet = { info: jest.fn(), warn: jest.fn() } as unknown as Logger;

describe('ClaimCheckSweep', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'thorax-sweep-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('deletes claim-checked inputs older than OBJECT_STORE_RETENTION_HOURS and nothing else', async () => {
    const store = new FileObjectStore(dir);
    const config = loadConfig(ingestConfigSchema, { OBJECT_STORE_URL: `file://${dir}`, OBJECT_STORE_RETENTION_HOURS: '2' });
    const old = await store.put('studies/2026-11-28/old', Buffer.from('a'));
    const fresh = await store.put('studies/2026-11-30/fresh', Buffer.from('b'));
    const review = await store.put('review/old-heatmap', Buffer.from('c'));
    const threeHoursAgo = new Date(Date.now() - 3 * 3_600_000);
    utimesSync(path.join(dir, 'studies/2026-11-28/old'), threeHoursAgo, threeHoursAgo);
    utimesSync(path.join(dir, 'review/old-heatmap'), threeHoursAgo, threeHoursAgo);
    const sweep = new ClaimCheckSweep(config, store, quiet);
    expect(await sweep.sweepOnce()).toBe(1);
    expect(await store.exists(old.uri)).toBe(false);
    expect(await store.exists(fresh.uri)).toBe(true);
    expect(await store.exists(review.uri)).toBe(true);
    // An hour later the fresh one is still within its two hours; three hours later it goes.
    expect(await sweep.sweepOnce(Date.now() + 3_600_000)).toBe(0);
    expect(await sweep.sweepOnce(Date.now() + 3 * 3_600_000)).toBe(1);
    expect(await store.exists(fresh.uri)).toBe(false);
  });

  it('is off with 0 hours', () => {
    const store = new FileObjectStore(dir);
    const config = loadConfig(ingestConfigSchema, { OBJECT_STORE_URL: `file://${dir}`, OBJECT_STORE_RETENTION_HOURS: '0' });
    const sweep = new ClaimCheckSweep(config, store, quiet);
    sweep.onApplicationBootstrap();
    expect((sweep as unknown as { timer: unknown }).timer).toBeNull();
  });
});
