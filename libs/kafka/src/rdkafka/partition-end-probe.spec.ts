import type { RdKafkaConsumer } from './confluent-module';
import { type EndProbeCandidate, offsetPastMarkers, partitionToProbe, RdkafkaPartitionEndProbe } from './partition-end-probe';

type Message = { topic: string; partition: number; offset: number };
type Eof = { topic: string; partition: number; offset: number };

/**
 * librdkafka's consumer as the probe sees it: a watermark answer, then per consume() call the
 * messages delivered and the end-of-partition events that follow them.
 */
class FakeConsumer implements RdKafkaConsumer {
  config: Record<string, unknown> = {};
  high = 10;
  watermarkError: Error | null = null;
  connectError: Error | null = null;
  /** What each consume() call delivers, in order; afterwards nothing. */
  script: { messages: Message[]; eof?: Eof }[] = [];
  assigned: { topic: string; partition: number; offset: number }[][] = [];
  unassigns = 0;
  connects = 0;
  disconnects = 0;
  private eofListener: ((eof: Eof) => void) | null = null;

  connect(_metadata: Record<string, unknown>, cb: (error: Error | null) => void): void {
    this.connects += 1;
    setImmediate(() => cb(this.connectError));
  }
  disconnect(cb: (error: Error | null) => void): void {
    this.disconnects += 1;
    setImmediate(() => cb(null));
  }
  isConnected(): boolean {
    return true;
  }
  assign(assignments: { topic: string; partition: number; offset: number }[]): void {
    this.assigned.push(assignments);
  }
  unassign(): void {
    this.unassigns += 1;
  }
  consumeTimeoutMs = 0;
  setDefaultConsumeTimeout(timeoutMs: number): void {
    this.consumeTimeoutMs = timeoutMs;
  }
  consume(_count: number, cb: (error: Error | null, messages: Message[]) => void): void {
    const step = this.script.shift();
    setTimeout(() => {
      if (step?.eof) this.eofListener?.(step.eof);
      cb(null, step?.messages ?? []);
    }, 5);
  }
  queryWatermarkOffsets(
    _topic: string,
    _partition: number,
    _timeoutMs: number,
    cb: (error: Error | null, offsets: { lowOffset: number; highOffset: number }) => void,
  ): void {
    setImmediate(() => cb(this.watermarkError, { lowOffset: 0, highOffset: this.high }));
  }
  on(event: string, listener: (value: never) => void): void {
    if (event === 'partition.eof') this.eofListener = listener as (eof: Eof) => void;
  }
}

function setup(timeoutMs = 300) {
  const consumer = new FakeConsumer();
  const probe = new RdkafkaPartitionEndProbe((config) => {
    consumer.config = config;
    return consumer;
  }, timeoutMs);
  return { consumer, probe };
}

describe('offsetPastMarkers', () => {
  it('answers the end only for a settled range that lies past the committed offset', () => {
    expect(offsetPastMarkers('41', { kind: 'settled', end: '42' })).toBe('42');
    expect(offsetPastMarkers('38', { kind: 'settled', end: '42' })).toBe('42');
    expect(offsetPastMarkers('42', { kind: 'settled', end: '42' })).toBeNull();
    expect(offsetPastMarkers('43', { kind: 'settled', end: '42' })).toBeNull();
    expect(offsetPastMarkers('38', { kind: 'records', offset: '39' })).toBeNull();
    expect(offsetPastMarkers('38', { kind: 'at-end' })).toBeNull();
    expect(offsetPastMarkers('38', { kind: 'unknown', reason: 'timeout' })).toBeNull();
  });

  it('compares offsets as integers, not strings', () => {
    expect(offsetPastMarkers('9', { kind: 'settled', end: '10' })).toBe('10');
    expect(offsetPastMarkers('10', { kind: 'settled', end: '9' })).toBeNull();
  });
});

describe('partitionToProbe', () => {
  const idle = (overrides: Partial<EndProbeCandidate> = {}): EndProbeCandidate => ({
    checkEnd: true,
    fenced: false,
    busy: 0,
    lastWorkAt: 0,
    nextProbeAt: 0,
    ...overrides,
  });
  const now = 10_000;

  it('picks an assigned, idle partition that may stand before markers', () => {
    expect(partitionToProbe([[3, idle()]], new Set([3]), now, 1_500)).toBe(3);
  });

  it('passes over partitions with work held or waiting, recent work, a backoff, a fence, nothing to check, or no assignment', () => {
    const assigned = new Set([0, 1, 2, 3, 4]);
    const partitions: [number, EndProbeCandidate][] = [
      [0, idle({ busy: 1 })],
      [1, idle({ lastWorkAt: now - 1_000 })],
      [2, idle({ nextProbeAt: now + 1 })],
      [3, idle({ fenced: true })],
      [4, idle({ checkEnd: false })],
      [5, idle()],
    ];
    expect(partitionToProbe(partitions, assigned, now, 1_500)).toBeNull();
    expect(partitionToProbe(partitions, new Set([...assigned, 5]), now, 1_500)).toBe(5);
    expect(partitionToProbe([[1, idle({ lastWorkAt: now - 1_500 })]], assigned, now, 1_500)).toBe(1);
  });

  it('probes nothing while the member has no assignment (a rebalance)', () => {
    expect(partitionToProbe([[0, idle()]], new Set(), now, 1_500)).toBeNull();
  });
});

describe('RdkafkaPartitionEndProbe', () => {
  it('is a read_committed consumer that never commits and never jumps to an offset it was not given', async () => {
    const { consumer, probe } = setup();
    consumer.script = [{ messages: [], eof: { topic: 't', partition: 0, offset: 10 } }];
    await probe.probe('t', 0, '8');
    expect(consumer.config).toMatchObject({
      'isolation.level': 'read_committed',
      'enable.auto.commit': false,
      'enable.partition.eof': true,
      'auto.offset.reset': 'error',
    });
    await probe.close();
    expect(consumer.disconnects).toBe(1);
  });

  it('settled: the end of the partition reached from the offset with no record delivered', async () => {
    const { consumer, probe } = setup();
    consumer.script = [{ messages: [] }, { messages: [], eof: { topic: 't', partition: 0, offset: 10 } }];
    expect(await probe.probe('t', 0, '8')).toEqual({ kind: 'settled', end: '10' });
    expect(consumer.assigned).toEqual([[{ topic: 't', partition: 0, offset: 8 }]]);
    expect(consumer.unassigns).toBe(1);
  });

  it('records: a record delivered in the range, even when the end of the partition comes with it', async () => {
    const { consumer, probe } = setup();
    consumer.script = [{ messages: [{ topic: 't', partition: 0, offset: 9 }], eof: { topic: 't', partition: 0, offset: 10 } }];
    expect(await probe.probe('t', 0, '8')).toEqual({ kind: 'records', offset: '9' });
  });

  it('at-end: the offset is already the last stable offset (no read at all)', async () => {
    const { consumer, probe } = setup();
    consumer.high = 8;
    expect(await probe.probe('t', 0, '8')).toEqual({ kind: 'at-end' });
    expect(consumer.assigned).toEqual([]);
  });

  it('unknown: no end of partition in time, an end for another partition or before the offset, a failed watermark query or connect', async () => {
    const { consumer, probe } = setup(100);
    consumer.script = [
      { messages: [], eof: { topic: 't', partition: 1, offset: 10 } },
      { messages: [], eof: { topic: 't', partition: 0, offset: 7 } },
    ];
    expect(await probe.probe('t', 0, '8')).toMatchObject({ kind: 'unknown' });
    consumer.watermarkError = new Error('broker down');
    expect(await probe.probe('t', 0, '8')).toEqual({ kind: 'unknown', reason: 'watermarks: broker down' });

    const failing = setup();
    failing.consumer.connectError = new Error('no broker');
    expect(await failing.probe.probe('t', 0, '8')).toEqual({ kind: 'unknown', reason: 'connect: no broker' });
    // The next probe connects again.
    failing.consumer.connectError = null;
    failing.consumer.script = [{ messages: [], eof: { topic: 't', partition: 0, offset: 10 } }];
    expect(await failing.probe.probe('t', 0, '8')).toEqual({ kind: 'settled', end: '10' });
    expect(failing.consumer.connects).toBe(2);
  });

  it('runs one probe at a time on its one consumer', async () => {
    const { consumer, probe } = setup();
    consumer.script = [
      { messages: [], eof: { topic: 't', partition: 0, offset: 10 } },
      { messages: [], eof: { topic: 't', partition: 1, offset: 10 } },
    ];
    const [a, b] = await Promise.all([probe.probe('t', 0, '8'), probe.probe('t', 1, '9')]);
    expect(a).toEqual({ kind: 'settled', end: '10' });
    expect(b).toEqual({ kind: 'settled', end: '10' });
    expect(consumer.assigned).toEqual([[{ topic: 't', partition: 0, offset: 8 }], [{ topic: 't', partition: 1, offset: 9 }]]);
    expect(consumer.connects).toBe(1);
  });
});
