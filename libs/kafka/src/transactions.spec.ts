import { createLogger } from '@thorax/observability';
import { KafkaJSProtocolError } from 'kafkajs';
import { KafkaPublisher } from './kafka-publisher';
import {
  DEFAULT_TRANSACTION_LIMITS,
  inTransaction,
  isFencedError,
  refusalKey,
  type TransactionHandle,
  TransactionScope,
  tryInTransaction,
  whenCommitted,
  whileConcurrent,
} from './transactions';

const log = createLogger({ service: 'unit', version: '0', level: 'silent' });

class FakeTransaction implements TransactionHandle {
  requests: string[][] = [];
  offsets: { partition: number; offset: string }[] = [];
  committed = false;
  aborted = false;
  refuse: (keys: string[]) => unknown = () => null;

  async sendBatch(batch: Parameters<TransactionHandle['sendBatch']>[0]): Promise<unknown> {
    const keys = batch.topicMessages.flatMap((t) => t.messages.map((m) => `${t.topic}/${m.key}`));
    const error = this.refuse(keys);
    if (error) throw error;
    this.requests.push(keys);
    return [];
  }
  async sendOffsets(offsets: Parameters<TransactionHandle['sendOffsets']>[0]): Promise<void> {
    this.offsets.push(...(offsets.topics[0]?.partitions ?? []));
  }
  async commit(): Promise<void> {
    this.committed = true;
  }
  async abort(): Promise<void> {
    this.aborted = true;
  }
}

const record = (topic: string, key: string, size = 10) => ({ topic, key, value: Buffer.alloc(size) });
const tooLarge = () => Object.assign(new Error('too large'), { type: 'MESSAGE_TOO_LARGE' });

describe('TransactionScope', () => {
  it('buffers what handlers publish and sends it in few requests at commit, offsets after the records', async () => {
    const txn = new FakeTransaction();
    const scope = new TransactionScope(txn, false, { maxBatchRecords: 3, maxBatchBytes: 1 << 20 });
    for (let i = 0; i < 7; i += 1) await scope.publish([record('out', `k${i}`)]);
    // Two full requests went when the buffer reached 3 records; the rest waits for the commit.
    expect(txn.requests).toEqual([
      ['out/k0', 'out/k1', 'out/k2'],
      ['out/k3', 'out/k4', 'out/k5'],
    ]);
    await scope.commit('g', 'in', 2, '42', log);
    expect(txn.requests[2]).toEqual(['out/k6']);
    expect(txn.offsets).toEqual([{ partition: 2, offset: '42' }]);
    expect(txn.committed).toBe(true);
  });

  it('a scope that published nothing commits its offset through `withoutRecords`, not the transaction; one that published does not', async () => {
    const empty = new FakeTransaction();
    const plain: string[] = [];
    let afterCommit = 0;
    const quiet = new TransactionScope(empty, false);
    quiet.afterCommit(async () => void (afterCommit += 1));
    await quiet.publish([]);
    expect(await quiet.commit('g', 'in', 1, '9', log, async () => void plain.push('9'))).toBe(false);
    expect(plain).toEqual(['9']);
    expect(empty.offsets).toEqual([]);
    expect(empty.committed).toBe(false);
    expect(afterCommit).toBe(1);

    // A dead letter (`alone`) counts as published, as does a buffered record.
    for (const options of [{ alone: true }, {}]) {
      const txn = new FakeTransaction();
      const scope = new TransactionScope(txn, false);
      await scope.publish([record('dlq', 'k')], options);
      expect(await scope.commit('g', 'in', 1, '10', log, async () => void plain.push('10'))).toBe(true);
      expect(txn.offsets).toEqual([{ partition: 1, offset: '10' }]);
      expect(txn.committed).toBe(true);
    }
    expect(plain).toEqual(['9']);
  });

  it('librdkafka: a refused record aborts the transaction; the careful retry sends one at a time and fails a known refusal without sending it', async () => {
    const memory = { abortsTransaction: true, known: new Map<string, unknown>() };
    // A buffered flush with the large record is refused: the transaction is poisoned, the next try careful.
    const first = new FakeTransaction();
    first.refuse = (keys) => (keys.includes('out/big') ? tooLarge() : null);
    const buffered = new TransactionScope(first, false, DEFAULT_TRANSACTION_LIMITS, memory);
    await buffered.publish([record('out', 'a'), record('out', 'big', 8192)]);
    await expect(buffered.commit('g', 'in', 0, '2', log)).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    expect(buffered.refused).toBe(true);
    expect(memory.known.size).toBe(0); // not sent alone: the culprit is not known yet
    // Careful: each record alone; the refusal poisons this try too (librdkafka) and is remembered.
    const second = new FakeTransaction();
    second.refuse = first.refuse;
    const careful = new TransactionScope(second, true, DEFAULT_TRANSACTION_LIMITS, memory);
    await careful.publish([record('out', 'a')]);
    await expect(careful.publish([record('out', 'big', 8192)])).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    expect(careful.failure).not.toBeNull();
    expect([...memory.known.keys()]).toEqual([refusalKey(record('out', 'big', 8192))]);
    // The next careful try fails the known record at once (its input is dead-lettered) and commits.
    const third = new FakeTransaction();
    third.refuse = () => {
      throw new Error('a known refusal must not be sent again');
    };
    const again = new TransactionScope(third, true, DEFAULT_TRANSACTION_LIMITS, memory);
    await expect(again.publish([record('out', 'big', 8192)])).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    expect(again.failure).toBeNull();
    third.refuse = () => null;
    await again.publish([record('out', 'a'), record('out.dlq', 'big')]);
    await again.commit('g', 'in', 0, '2', log);
    expect(third.requests).toEqual([['out/a'], ['out.dlq/big']]);
    expect(third.committed).toBe(true);
  });

  it('sends `alone` calls at once after what is buffered, and a refused single record leaves the transaction usable', async () => {
    const txn = new FakeTransaction();
    txn.refuse = (keys) => (keys.includes('dlq/big') ? tooLarge() : null);
    const scope = new TransactionScope(txn, false);
    await scope.publish([record('out', 'a')]);
    await expect(scope.publish([record('dlq', 'big')], { alone: true })).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    expect(scope.failure).toBeNull();
    await scope.publish([record('dlq', 'small')], { alone: true });
    expect(txn.requests).toEqual([['out/a'], ['dlq/small']]);
    await scope.commit('g', 'in', 0, '3', log);
    expect(txn.committed).toBe(true);
  });

  it('a refused buffered flush poisons the transaction and asks for a careful retry; a careful scope sends record by record', async () => {
    const txn = new FakeTransaction();
    txn.refuse = (keys) => (keys.includes('out/big') ? tooLarge() : null);
    const scope = new TransactionScope(txn, false);
    await scope.publish([record('out', 'a')]);
    await scope.publish([record('out', 'big')]);
    await expect(scope.commit('g', 'in', 0, '2', log)).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    expect(scope.refused).toBe(true);
    expect(txn.committed).toBe(false);
    await expect(scope.publish([record('out', 'b')])).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });

    const retry = new FakeTransaction();
    retry.refuse = txn.refuse;
    const careful = new TransactionScope(retry, true);
    await careful.publish([record('out', 'a'), record('out', 'c')]);
    await expect(careful.publish([record('out', 'big')])).rejects.toMatchObject({ type: 'MESSAGE_TOO_LARGE' });
    await careful.commit('g', 'in', 0, '2', log);
    expect(retry.requests).toEqual([['out/a'], ['out/c']]);
    expect(retry.committed).toBe(true);
  });

  it('any other send failure poisons the transaction', async () => {
    const txn = new FakeTransaction();
    txn.refuse = () => new KafkaJSProtocolError('NOT_ENOUGH_REPLICAS');
    const scope = new TransactionScope(txn, true);
    await expect(scope.publish([record('out', 'a')])).rejects.toBeInstanceOf(KafkaJSProtocolError);
    expect(scope.failure).toBeInstanceOf(KafkaJSProtocolError);
    await expect(scope.commit('g', 'in', 0, '1', log)).rejects.toBeInstanceOf(KafkaJSProtocolError);
    expect(txn.offsets).toEqual([]);
  });

  it('routes the ordinary Publisher into the current transaction and runs after-commit work only on commit', async () => {
    const sent: string[] = [];
    const direct = new KafkaPublisher({ sendBatch: async () => void sent.push('direct') as never }, { lingerMs: 0, maxBatchRecords: 10 });
    const txn = new FakeTransaction();
    const scope = new TransactionScope(txn, false);
    const marks: string[] = [];
    await inTransaction(scope, async () => {
      await direct.publish([record('out', 'in-txn')]);
      await whenCommitted(async () => void marks.push('committed'), () => marks.push('aborted'));
    });
    expect(sent).toEqual([]);
    expect(marks).toEqual([]);
    await scope.commit('g', 'in', 0, '1', log);
    expect(txn.requests).toEqual([['out/in-txn']]);
    expect(marks).toEqual(['committed']);

    const abandoned = new TransactionScope(new FakeTransaction(), false);
    await inTransaction(abandoned, () => whenCommitted(async () => void marks.push('never'), () => marks.push('aborted')));
    abandoned.abandoned();
    abandoned.abandoned();
    expect(marks).toEqual(['committed', 'aborted']);

    // Outside a transaction: the producer at once, and the work at once.
    await direct.publish([record('out', 'plain')]);
    await whenCommitted(async () => void marks.push('now'));
    expect(sent).toEqual(['direct']);
    expect(marks).toEqual(['committed', 'aborted', 'now']);
  });

  it('keeps what a successful try published and drops what a failed try held, so an in-place retry publishes once', async () => {
    const txn = new FakeTransaction();
    const scope = new TransactionScope(txn, false);
    const publisher = new KafkaPublisher({ sendBatch: async () => [] as never }, { lingerMs: 0, maxBatchRecords: 10 });
    const marks: string[] = [];
    await inTransaction(scope, async () => {
      await expect(
        tryInTransaction(async () => {
          await publisher.publish([record('out', 'first-try')]);
          await whenCommitted(async () => void marks.push('first'), () => marks.push('first dropped'));
          throw new Error('transient');
        }),
      ).rejects.toThrow('transient');
      await tryInTransaction(async () => {
        await publisher.publish([record('out', 'second-try')]);
        await whenCommitted(async () => void marks.push('second'));
      });
    });
    expect(marks).toEqual(['first dropped']);
    await scope.commit('g', 'in', 0, '1', log);
    expect(txn.requests).toEqual([['out/second-try']]);
    expect(marks).toEqual(['first dropped', 'second']);
  });

  it('a failed try that had already sent a record (alone) fails the transaction', async () => {
    const txn = new FakeTransaction();
    const scope = new TransactionScope(txn, false);
    const publisher = new KafkaPublisher({ sendBatch: async () => [] as never }, { lingerMs: 0, maxBatchRecords: 10 });
    await inTransaction(scope, () =>
      expect(
        tryInTransaction(async () => {
          await publisher.publish([record('dlq', 'copy')], { alone: true });
          throw new Error('after the copy');
        }),
      ).rejects.toThrow('after the copy'),
    );
    expect(txn.requests).toEqual([['dlq/copy']]);
    expect(scope.failure).toBeInstanceOf(Error);
    await expect(scope.commit('g', 'in', 0, '1', log)).rejects.toThrow(/already sent/);
  });

  it('repeats a request while the coordinator is still completing the previous transaction, and nothing else', async () => {
    let calls = 0;
    const concurrent = () => Object.assign(new KafkaJSProtocolError('busy'), { type: 'CONCURRENT_TRANSACTIONS' });
    await expect(whileConcurrent(async () => (++calls < 3 ? Promise.reject(concurrent()) : 'done'))).resolves.toBe('done');
    expect(calls).toBe(3);
    calls = 0;
    await expect(whileConcurrent(async () => (++calls, Promise.reject(new KafkaJSProtocolError('NOT_ENOUGH_REPLICAS'))))).rejects.toBeInstanceOf(KafkaJSProtocolError);
    expect(calls).toBe(1);
    calls = 0;
    await expect(whileConcurrent(async () => (++calls, Promise.reject(concurrent())), 4)).rejects.toMatchObject({ type: 'CONCURRENT_TRANSACTIONS' });
    expect(calls).toBe(4);
  });

  it('recognises a fenced producer through kafkajs wrappers', () => {
    const fenced = new KafkaJSProtocolError('fenced');
    Object.assign(fenced, { type: 'INVALID_PRODUCER_EPOCH' });
    expect(isFencedError({ name: 'KafkaJSNumberOfRetriesExceeded', originalError: fenced })).toBe(true);
    expect(isFencedError({ code: 90 })).toBe(true);
    expect(isFencedError(new KafkaJSProtocolError('NOT_ENOUGH_REPLICAS'))).toBe(false);
  });
});
