import { createLogger } from '@thorax/observability';
import { testBrokers, testKafka } from '@thorax/testing';
import { type TopicRecord, TopicTools } from './topic-tools';

jest.setTimeout(90_000);

const RUN = `tools-${Date.now().toString(36)}`;
const log = createLogger({ service: 'test', version: '0', level: 'silent' });
const connect = () => TopicTools.connect({ brokers: testBrokers(), clientId: `thorax-${RUN}` }, log);
const open: TopicTools[] = [];

async function topic(name: string, partitions: number): Promise<string> {
  const admin = testKafka().admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: `${RUN}.${name}`, numPartitions: partitions }] });
  await admin.disconnect();
  return `${RUN}.${name}`;
}

function tools(): TopicTools {
  const t = connect();
  open.push(t);
  return t;
}

afterAll(async () => {
  await Promise.all(open.map((t) => t.disconnect()));
});

describe('TopicTools against a broker', () => {
  it('reads to the end a topic written in transactions (markers and aborted records leave gaps) and stops there', async () => {
    const t = tools();
    const name = await topic('ledger', 2);
    await t.beginTransactions(`${RUN}-tx`);
    for (let i = 0; i < 4; i += 1) {
      await t.inTransaction((tx) => tx.send([{ topic: name, key: `k${i}`, value: Buffer.from(`v${i}`), partition: i % 2 }]));
    }
    await expect(
      t.inTransaction(async (tx) => {
        await tx.send([{ topic: name, key: 'aborted', value: Buffer.from('x'), partition: 0 }]);
        throw new Error('abort it');
      }),
    ).rejects.toThrow('abort it');
    const seen: TopicRecord[] = [];
    let caughtUp = 0;
    const reading = await t.read(name, { from: 'earliest', until: 'end', onCaughtUp: () => (caughtUp += 1) }, (r) => void seen.push(r));
    await reading.done;
    expect(seen.map((r) => r.key).sort()).toEqual(['k0', 'k1', 'k2', 'k3']);
    expect(caughtUp).toBe(1);
    // Records written after the read began are not read by an `until: 'end'` read.
    expect((await t.offsets(name)).map((o) => o.high > 2n)).toEqual([true, true]);
  });

  it('follows from the end: only records written after the start, caught up at once', async () => {
    const t = tools();
    const name = await topic('follow', 3);
    await t.send([{ topic: name, key: 'old', value: Buffer.from('old') }]);
    const seen: string[] = [];
    let caughtUp = false;
    let got!: () => void;
    const both = new Promise<void>((resolve) => (got = resolve));
    const reading = await t.read(name, { from: 'latest', until: 'never', onCaughtUp: () => (caughtUp = true) }, (r) => {
      seen.push(r.key ?? '');
      if (seen.length === 2) got();
    });
    expect(caughtUp).toBe(true);
    const positions = await t.send([
      { topic: name, key: 'new-1', value: Buffer.from('1') },
      { topic: name, key: 'new-2', value: Buffer.from('2') },
    ]);
    expect(positions.map((p) => p.topic)).toEqual([name, name]);
    await both;
    await reading.stop();
    await reading.done;
    expect(seen.sort()).toEqual(['new-1', 'new-2']);
  });

  it('fences an older holder of a transactional id: its next transaction fails and writes nothing', async () => {
    const name = await topic('fence', 1);
    const first = tools();
    const second = tools();
    await first.beginTransactions(`${RUN}-fence`);
    await first.inTransaction((tx) => tx.send([{ topic: name, key: 'first', value: Buffer.from('1') }]));
    await second.beginTransactions(`${RUN}-fence`);
    await expect(first.inTransaction((tx) => tx.send([{ topic: name, key: 'zombie', value: Buffer.from('2') }]))).rejects.toThrow();
    await second.inTransaction((tx) => tx.send([{ topic: name, key: 'second', value: Buffer.from('3') }]));
    const keys: string[] = [];
    await (await second.read(name, { from: 'earliest', until: 'end' }, (r) => void keys.push(r.key ?? ''))).done;
    expect(keys).toEqual(['first', 'second']);
  });

  it('reports lag per group and partition, partitions never committed on included', async () => {
    const t = tools();
    const name = await topic('lag', 2);
    await t.send([0, 0, 0, 1].map((p, i) => ({ topic: name, key: `k${i}`, value: Buffer.from('x'), partition: p })));
    const admin = testKafka().admin();
    await admin.connect();
    await admin.setOffsets({ groupId: `${RUN}-group`, topic: name, partitions: [{ partition: 0, offset: '1' }] });
    await admin.disconnect();
    const lag = (await t.consumerLag(`${RUN}-`)).map((l) => ({ ...l, committed: l.committed?.toString() ?? null, high: l.high.toString(), lag: l.lag.toString() }));
    expect(lag).toEqual([
      { group: `${RUN}-group`, topic: name, partition: 0, committed: '1', high: '3', lag: '2' },
      { group: `${RUN}-group`, topic: name, partition: 1, committed: null, high: '1', lag: '1' },
    ]);
  });
});
