import type { Producer } from 'kafkajs';
import { KafkaPublisher } from './kafka-publisher';

function fakeProducer(fail = false) {
  const sent: { topic: string; keys: string[] }[][] = [];
  const producer = {
    sendBatch: jest.fn(async (batch: { topicMessages: { topic: string; messages: { key: string }[] }[] }) => {
      sent.push(batch.topicMessages.map((t) => ({ topic: t.topic, keys: t.messages.map((m) => m.key) })));
      if (fail) throw new Error('broker down');
      return [];
    }),
  };
  return { producer: producer as unknown as Producer, sent };
}

describe('KafkaPublisher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('coalesces concurrent publishes into one acknowledged request, grouped by topic', async () => {
    const { producer, sent } = fakeProducer();
    const publisher = new KafkaPublisher(producer, { lingerMs: 5, maxBatchRecords: 100 });
    const a = publisher.publish([{ topic: 't1', key: 'a', value: Buffer.from('1') }]);
    const b = publisher.publish([
      { topic: 't2', key: 'b', value: Buffer.from('2') },
      { topic: 't1', key: 'c', value: Buffer.from('3') },
    ]);
    expect(sent).toHaveLength(0);
    await jest.advanceTimersByTimeAsync(5);
    await Promise.all([a, b]);
    expect(sent).toEqual([
      [
        { topic: 't1', keys: ['a', 'c'] },
        { topic: 't2', keys: ['b'] },
      ],
    ]);
  });

  it('keeps a call asked to go alone out of coalesced requests', async () => {
    for (const serial of [false, true]) {
      const { producer, sent } = fakeProducer();
      const publisher = new KafkaPublisher(producer, { lingerMs: 5, maxBatchRecords: 100, serial });
      const calls = [
        publisher.publish([{ topic: 't', key: 'a', value: Buffer.from('1') }]),
        publisher.publish([{ topic: 'dlq', key: 'b', value: Buffer.from('2') }], { alone: true }),
        publisher.publish([{ topic: 't', key: 'c', value: Buffer.from('3') }]),
      ];
      await jest.advanceTimersByTimeAsync(5);
      await Promise.all(calls);
      expect(sent).toEqual([[{ topic: 't', keys: ['a'] }], [{ topic: 'dlq', keys: ['b'] }], [{ topic: 't', keys: ['c'] }]]);
    }
  });

  it('sends at once when the batch is full', async () => {
    const { producer, sent } = fakeProducer();
    const publisher = new KafkaPublisher(producer, { lingerMs: 1000, maxBatchRecords: 2 });
    await publisher.publish([
      { topic: 't', key: 'a', value: Buffer.alloc(0) },
      { topic: 't', key: 'b', value: Buffer.alloc(0) },
    ]);
    expect(sent).toHaveLength(1);
  });

  it('rejects every caller of a failed request (nothing is reported as published)', async () => {
    const { producer } = fakeProducer(true);
    const publisher = new KafkaPublisher(producer, { lingerMs: 1, maxBatchRecords: 10 });
    const a = publisher.publish([{ topic: 't', key: 'a', value: Buffer.alloc(0) }]);
    const b = publisher.publish([{ topic: 't', key: 'b', value: Buffer.alloc(0) }]);
    const settled = Promise.allSettled([a, b]);
    await jest.advanceTimersByTimeAsync(1);
    expect((await settled).map((s) => s.status)).toEqual(['rejected', 'rejected']);
  });

  it('re-sends each call alone when the broker refuses a coalesced request for one record: only that call fails', async () => {
    for (const serial of [false, true]) {
      const sent: string[][] = [];
      const producer = {
        sendBatch: jest.fn(async (batch: { topicMessages: { messages: { key: string }[] }[] }) => {
          const keys = batch.topicMessages.flatMap((t) => t.messages.map((m) => m.key));
          sent.push(keys);
          if (keys.includes('big')) {
            const refusal = Object.assign(new Error('The request included a message larger than the max message size the server will accept'), { type: 'MESSAGE_TOO_LARGE' });
            throw Object.assign(new Error('non-retriable'), { cause: refusal });
          }
          return [];
        }),
      } as unknown as Producer;
      const publisher = new KafkaPublisher(producer, { lingerMs: 1, maxBatchRecords: 10, serial });
      const calls = ['a', 'big', 'c'].map((key) => publisher.publish([{ topic: 't', key, value: Buffer.alloc(1) }]));
      const settled = Promise.allSettled(calls);
      await jest.advanceTimersByTimeAsync(10);
      expect((await settled).map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      expect(sent).toEqual([['a', 'big', 'c'], ['a'], ['big'], ['c']]);
    }
  });

  it('does not split a request on a passing outage (every caller is rejected, Kafka redelivers)', async () => {
    const sent: string[][] = [];
    const producer = {
      sendBatch: jest.fn(async (batch: { topicMessages: { messages: { key: string }[] }[] }) => {
        sent.push(batch.topicMessages.flatMap((t) => t.messages.map((m) => m.key)));
        throw Object.assign(new Error('retries exceeded'), { cause: Object.assign(new Error('not leader'), { type: 'NOT_LEADER_FOR_PARTITION' }) });
      }),
    } as unknown as Producer;
    const publisher = new KafkaPublisher(producer, { lingerMs: 1, maxBatchRecords: 10 });
    const settled = Promise.allSettled(['a', 'b'].map((key) => publisher.publish([{ topic: 't', key, value: Buffer.alloc(1) }])));
    await jest.advanceTimersByTimeAsync(10);
    expect((await settled).map((s) => s.status)).toEqual(['rejected', 'rejected']);
    expect(sent).toEqual([['a', 'b']]);
  });

  it('serial: one request in flight, records published meanwhile go together in the next', async () => {
    const sent: string[][] = [];
    const pending: (() => void)[] = [];
    const producer = {
      sendBatch: jest.fn((batch: { topicMessages: { messages: { key: string }[] }[] }) => {
        sent.push(batch.topicMessages.flatMap((t) => t.messages.map((m) => m.key)));
        return new Promise<[]>((resolve) => pending.push(() => resolve([])));
      }),
    } as unknown as Producer;
    const publisher = new KafkaPublisher(producer, { lingerMs: 0, maxBatchRecords: 100, serial: true });
    const a = publisher.publish([{ topic: 't', key: 'a', value: Buffer.alloc(0) }]);
    const b = publisher.publish([{ topic: 't', key: 'b', value: Buffer.alloc(0) }]);
    const c = publisher.publish([{ topic: 't', key: 'c', value: Buffer.alloc(0) }]);
    expect(sent).toEqual([['a']]);
    let bDone = false;
    void b.then(() => (bDone = true));
    pending.shift()!();
    await a;
    await jest.advanceTimersByTimeAsync(0);
    expect(sent).toEqual([['a'], ['b', 'c']]);
    expect(bDone).toBe(false);
    pending.shift()!();
    await Promise.all([b, c]);
  });

  it('serial: after a failed request, the recovery runs before the next request is sent', async () => {
    const order: string[] = [];
    let fail = true;
    const producer = {
      sendBatch: jest.fn(async (batch: { topicMessages: { messages: { key: string }[] }[] }) => {
        order.push(`send ${batch.topicMessages[0]!.messages.map((m) => m.key).join(',')}`);
        if (fail) throw new Error('request timed out');
        return [];
      }),
    } as unknown as Producer;
    const publisher = new KafkaPublisher(producer, {
      lingerMs: 0,
      maxBatchRecords: 100,
      serial: true,
      afterFailure: async () => {
        order.push('recover');
        fail = false;
      },
    });
    const a = publisher.publish([{ topic: 't', key: 'a', value: Buffer.alloc(0) }]);
    const b = publisher.publish([{ topic: 't', key: 'b', value: Buffer.alloc(0) }]);
    await expect(a).rejects.toThrow('request timed out');
    await b;
    expect(order).toEqual(['send a', 'recover', 'send b']);
  });

  it('serial: what gathered during a request goes in requests within the byte limit, whole calls each', async () => {
    const sent: string[][] = [];
    const pending: (() => void)[] = [];
    const producer = {
      sendBatch: jest.fn((batch: { topicMessages: { messages: { key: string }[] }[] }) => {
        sent.push(batch.topicMessages.flatMap((t) => t.messages.map((m) => m.key)));
        return new Promise<[]>((resolve) => pending.push(() => resolve([])));
      }),
    } as unknown as Producer;
    const publisher = new KafkaPublisher(producer, { lingerMs: 0, maxBatchRecords: 100, maxBatchBytes: 1000, serial: true });
    const mb = (key: string, bytes: number) => ({ topic: 't', key, value: Buffer.alloc(bytes) });
    const calls = [
      publisher.publish([mb('a', 10)]),
      publisher.publish([mb('b1', 400), mb('b2', 400)]),
      publisher.publish([mb('c', 300)]),
      publisher.publish([mb('d', 5000)]),
      publisher.publish([mb('e', 10)]),
    ];
    // b (800) fits alone, c (300) would pass 1000 with it; d (5000) exceeds the limit by itself
    // and still goes, alone; e follows.
    for (let i = 0; i < 5; i += 1) {
      await jest.advanceTimersByTimeAsync(0);
      expect(pending).toHaveLength(1);
      pending.shift()!();
    }
    await Promise.all(calls);
    expect(sent).toEqual([['a'], ['b1', 'b2'], ['c'], ['d'], ['e']]);
  });

  it('not serial: calls beyond the byte limit go in a second request at once', async () => {
    const { producer, sent } = fakeProducer();
    const publisher = new KafkaPublisher(producer, { lingerMs: 5, maxBatchRecords: 100, maxBatchBytes: 100 });
    const a = publisher.publish([{ topic: 't', key: 'a', value: Buffer.alloc(80) }]);
    const b = publisher.publish([{ topic: 't', key: 'b', value: Buffer.alloc(80) }]);
    await jest.advanceTimersByTimeAsync(5);
    await Promise.all([a, b]);
    expect(sent).toEqual([[{ topic: 't', keys: ['a'] }], [{ topic: 't', keys: ['b'] }]]);
  });
});
