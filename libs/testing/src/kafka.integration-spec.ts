/** The end-to-end collectors against a real broker: duplicates and losses must fail a test. */
import { collect, collectOncePerId, expectOncePerId, produce, testKafka } from './kafka';

jest.setTimeout(60_000);

const kafka = testKafka('thorax-testing-itest');
const run = `itest-collect-${Date.now().toString(36)}`;

async function createTopic(topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3 }] });
  await admin.disconnect();
}

describe('collectOncePerId', () => {
  it('returns one record per id when each id came once', async () => {
    const topic = `${run}.once`;
    await createTopic(topic);
    await produce(kafka, topic, [
      { key: 'a', value: Buffer.from('1') },
      { key: 'b', value: Buffer.from('2') },
      { key: 'other', value: Buffer.from('3') },
    ]);
    const byId = await collectOncePerId(kafka, topic, ['a', 'b'], 20_000, { quietMs: 1000 });
    expect([...byId.keys()].sort()).toEqual(['a', 'b']);
    expect(byId.get('b')?.value?.toString()).toBe('2');
  });

  it('fails on a duplicate that arrives after every id was seen once', async () => {
    const topic = `${run}.late-duplicate`;
    await createTopic(topic);
    await produce(kafka, topic, [
      { key: 'a', value: Buffer.from('1') },
      { key: 'b', value: Buffer.from('2') },
    ]);
    const collecting = collectOncePerId(kafka, topic, ['a', 'b'], 30_000, { quietMs: 4000 });
    const outcome = collecting.then(
      () => 'resolved',
      (error: Error) => error.message,
    );
    // Reading started and saw both ids; then the duplicate comes within the quiet period.
    await new Promise((r) => setTimeout(r, 2000));
    await produce(kafka, topic, [{ key: 'a', value: Buffer.from('1 again') }]);
    expect(await outcome).toMatch(/0 missing, 1 repeated \[a ×2\]/);
  });

  it('fails on a missing id after the timeout', async () => {
    const topic = `${run}.missing`;
    await createTopic(topic);
    await produce(kafka, topic, [{ key: 'a', value: Buffer.from('1') }]);
    await expect(collectOncePerId(kafka, topic, ['a', 'z'], 5000, { quietMs: 500 })).rejects.toThrow(/1 missing \[z\], 0 repeated/);
  });

  it('collect keeps reading for the quiet period after `done` holds', async () => {
    const topic = `${run}.quiet`;
    await createTopic(topic);
    await produce(kafka, topic, [{ key: 'first', value: Buffer.from('1') }]);
    const reading = collect(kafka, topic, (rs) => rs.length >= 1, 30_000, { quietMs: 4000 });
    await new Promise((r) => setTimeout(r, 2000));
    await produce(kafka, topic, [{ key: 'late', value: Buffer.from('2') }]);
    const records = await reading;
    expect(records.map((r) => r.key).sort()).toEqual(['first', 'late']);
    expect(() => expectOncePerId(records, ['first', 'late'])).not.toThrow();
  });
});
