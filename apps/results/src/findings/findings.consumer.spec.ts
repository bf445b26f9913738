import { ThoraxError } from '@thorax/contracts';
import { ThoraxMetrics } from '@thorax/observability';
import type { FindingsRepository, StoreOutcome } from '../store/findings.repository';
import { okEvent } from '../testing/findings-events';
import { parseFindings } from './findings.consumer';
import { FindingsRecorder } from './findings-recorder.service';

describe('parseFindings', () => {
  it('returns a valid event', () => {
    const event = okEvent('img-1');
    expect(parseFindings(Buffer.from(JSON.stringify(event)))).toEqual(event);
  });

  it('turns anything else into a permanent INVALID_MESSAGE (dead-lettered at once)', () => {
    const bad = [Buffer.alloc(0), Buffer.from('not json'), Buffer.from(JSON.stringify({ ...okEvent('img-1'), status: 'maybe' }))];
    for (const value of bad) {
      let thrown: unknown;
      try {
        parseFindings(value);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ThoraxError);
      expect((thrown as ThoraxError).code).toBe('INVALID_MESSAGE');
      expect((thrown as ThoraxError).transient).toBe(false);
    }
  });
});

describe('FindingsRecorder', () => {
  async function latencyCount(metrics: ThoraxMetrics): Promise<number> {
    const json = await metrics.endToEndLatency.get();
    return json.values.find((v) => v.metricName === 'thorax_end_to_end_latency_seconds_count')?.value ?? 0;
  }

  it('observes end-to-end latency for new rows only, not for redeliveries', async () => {
    const outcomes: StoreOutcome[] = [
      { kind: 'stored', record: { seq: 1n, event: okEvent('img-1'), storedAt: new Date() }, study: null },
      { kind: 'duplicate' },
    ];
    const repository = { store: async () => outcomes.shift()! } as unknown as FindingsRepository;
    const metrics = new ThoraxMetrics('results-test');
    const recorder = new FindingsRecorder(repository, metrics);
    const event = okEvent('img-1', { receivedAt: new Date(Date.now() - 1500) });
    expect((await recorder.record(event)).kind).toBe('stored');
    expect((await recorder.record(event)).kind).toBe('duplicate');
    expect(await latencyCount(metrics)).toBe(1);
    const sum = (await metrics.endToEndLatency.get()).values.find((v) => v.metricName?.endsWith('_sum'))!.value;
    expect(sum).toBeGreaterThanOrEqual(1.5);
    expect(sum).toBeLessThan(10);
  });

  it('classifies store failures: unavailable means redeliver, never dead-letter', async () => {
    const repository = {
      store: async () => {
        throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      },
    } as unknown as FindingsRepository;
    const recorder = new FindingsRecorder(repository, new ThoraxMetrics('results-test'));
    await expect(recorder.record(okEvent('img-1'))).rejects.toMatchObject({ code: 'INTERNAL_ERROR', transient: true, redeliver: true });
  });
});
