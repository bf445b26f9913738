import type { TopicRecord } from '@thorax/kafka';
import { CliError } from '../exit-codes';
import { dlqEntryOf, ledgerValue, parsePosition, positionText, RateLimiter, replayHeaders, selects, sourceTopicOf, summarize } from './dlq-records';

function record(partition: number, offset: string, code: string, stage: string, key = `k${offset}`, extra: Record<string, string> = {}): TopicRecord {
  return {
    topic: 'thorax.studies.v1.dlq',
    partition,
    offset,
    key,
    value: Buffer.from('DICM'),
    headers: { 'content-type': 'application/dicom', traceparent: '00-aa-bb-01', 'thorax-error-code': code, 'thorax-error-message': 'why', 'thorax-failed-stage': stage, ...extra },
    timestamp: Date.parse('2026-11-30T10:00:00Z') + Number(offset) * 1000,
  };
}

describe('DLQ positions', () => {
  it('parses topic:partition:offset and prints it back', () => {
    const p = parsePosition('thorax.studies.v1.dlq:2:0042');
    expect(p).toEqual({ topic: 'thorax.studies.v1.dlq', partition: 2, offset: '42' });
    expect(positionText(p)).toBe('thorax.studies.v1.dlq:2:42');
  });

  it('refuses anything else as a usage error', () => {
    for (const bad of ['thorax.studies.v1.dlq:2', 'x:-1:3', 'x:1:y', '']) {
      expect(() => parsePosition(bad)).toThrow(CliError);
    }
  });

  it('names the source topic of a DLQ topic', () => {
    expect(sourceTopicOf('thorax.images.v1.dlq')).toBe('thorax.images.v1');
    expect(() => sourceTopicOf('thorax.images.v1')).toThrow(/not a dead-letter topic/);
  });
});

describe('DLQ summary and selection', () => {
  const entries = [
    record(0, '0', 'UNSUPPORTED_MODALITY', 'ingest'),
    record(0, '1', 'UNSUPPORTED_MODALITY', 'ingest'),
    record(1, '0', 'DECODE_FAILED', 'preprocess'),
    record(2, '7', 'UNSUPPORTED_MODALITY', 'ingest', 'k7', { 'thorax-value-omitted': '60000000' }),
  ].map(dlqEntryOf);

  it('counts by topic, stage and code, largest group first, with replayed counts', () => {
    const lines = summarize(entries, new Set(['thorax.studies.v1.dlq:0:1'])).trimEnd().split('\n');
    expect(lines.slice(2).map((l) => l.split(/\s{2,}/).slice(0, 5))).toEqual([
      ['thorax.studies.v1.dlq', 'ingest', 'UNSUPPORTED_MODALITY', '3', '1'],
      ['thorax.studies.v1.dlq', 'preprocess', 'DECODE_FAILED', '1', '0'],
    ]);
  });

  it('selects by code, stage, key and position', () => {
    const pick = (s: Parameters<typeof selects>[1]) => entries.filter((e) => selects(e, s)).map(positionText);
    expect(pick({ code: ['DECODE_FAILED'] })).toEqual(['thorax.studies.v1.dlq:1:0']);
    expect(pick({ stage: ['ingest'], key: ['k1', 'k7'] })).toEqual(['thorax.studies.v1.dlq:0:1', 'thorax.studies.v1.dlq:2:7']);
    expect(pick({ positions: [parsePosition('thorax.studies.v1.dlq:0:0')] })).toEqual(['thorax.studies.v1.dlq:0:0']);
    expect(pick({})).toHaveLength(4);
  });

  it('knows a dead letter whose value was dropped', () => {
    expect(entries[3]?.valueOmitted).toBe(60_000_000);
    expect(entries[0]?.valueOmitted).toBeNull();
  });
});

describe('replayed records', () => {
  it('keep the original headers, lose the dead-letter ones and say where they came from', () => {
    const entry = dlqEntryOf(record(0, '5', 'UNSUPPORTED_MODALITY', 'ingest', 'k5', { 'thorax-replay-of': 'older' }));
    expect(replayHeaders(entry)).toEqual({ 'content-type': 'application/dicom', traceparent: '00-aa-bb-01', 'thorax-replay-of': 'thorax.studies.v1.dlq:0:5' });
    expect(JSON.parse(ledgerValue(entry, 'thorax.studies.v1', new Date('2026-11-30T12:00:00Z')).toString())).toEqual({
      schema: 'thorax.dlq.replay.v1',
      dlq: { topic: 'thorax.studies.v1.dlq', partition: 0, offset: '5' },
      to: 'thorax.studies.v1',
      key: 'k5',
      code: 'UNSUPPORTED_MODALITY',
      replayedAt: '2026-11-30T12:00:00.000Z',
    });
  });
});

describe('RateLimiter', () => {
  it('spaces calls 1/rate apart and never sleeps without a limit', async () => {
    let now = 1000;
    const sleeps: number[] = [];
    const limiter = new RateLimiter(4, () => now, async (ms) => {
      sleeps.push(ms);
      now += ms;
    });
    for (let i = 0; i < 5; i += 1) await limiter.take();
    expect(sleeps).toEqual([250, 250, 250, 250]);
    expect(now).toBe(2000);
    const free = new RateLimiter(0, () => 0, async () => {
      throw new Error('slept');
    });
    await free.take();
    await free.take();
  });
});
