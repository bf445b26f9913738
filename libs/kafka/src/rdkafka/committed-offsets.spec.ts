import { CommittedOffsets, type OffsetsReaderConsumer, committedRows } from './committed-offsets';

type Row = { topic?: string; partition?: number; offset?: string | null };

class FakeReader implements OffsetsReaderConsumer {
  connects = 0;
  disconnects = 0;
  calls: { partitions: { topic: string; partition: number }[]; timeoutMs: number }[] = [];
  failConnect: Error | null = null;
  answer: (partitions: { topic: string; partition: number }[]) => Promise<Row[]> = async (partitions) =>
    partitions.map(({ topic, partition }) => ({ topic, partition, offset: String(partition * 10) }));

  async connect(): Promise<void> {
    this.connects += 1;
    if (this.failConnect) throw this.failConnect;
  }
  async disconnect(): Promise<void> {
    this.disconnects += 1;
  }
  committed(partitions: { topic: string; partition: number }[], timeoutMs: number): Promise<Row[]> {
    this.calls.push({ partitions, timeoutMs });
    return this.answer(partitions);
  }
}

function setup(partitions: number[] = [2, 0, 1]) {
  const made: { groupId: string; stable: boolean; reader: FakeReader }[] = [];
  const offsets = new CommittedOffsets({
    reader: (groupId, stable) => {
      const reader = new FakeReader();
      made.push({ groupId, stable, reader });
      return reader;
    },
    partitions: async () => partitions,
    timeoutMs: 1234,
  });
  return { offsets, made };
}

describe('committedRows', () => {
  it('answers every partition in the asked order, -1 where nothing is committed', () => {
    expect(
      committedRows(
        [
          { topic: 't', partition: 1, offset: '7' },
          { topic: 't', partition: 0, offset: null },
          { topic: 't', partition: 2, offset: '-1001' },
        ],
        't',
        [0, 1, 2],
      ),
    ).toEqual([
      { partition: 0, offset: '-1' },
      { partition: 1, offset: '7' },
      { partition: 2, offset: '-1' },
    ]);
  });

  it('fails on a partition that came back as an error instead of reading it as uncommitted', () => {
    // The package maps a failed partition's slot to an object without topic and partition.
    expect(() => committedRows([{ topic: 't', partition: 0, offset: '3' }, { offset: null }], 't', [0, 1])).toThrow(
      /a partition failed/,
    );
    expect(() => committedRows([new Error('Broker: Not coordinator') as Row], 't', [0])).toThrow(/Not coordinator/);
  });

  it('fails when a partition has no answer or another topic answers', () => {
    expect(() => committedRows([{ topic: 't', partition: 0, offset: '1' }], 't', [0, 1])).toThrow(/no answer for partition 1/);
    expect(() => committedRows([{ topic: 'u', partition: 0, offset: '1' }], 't', [0])).toThrow(/a partition failed/);
    expect(() => committedRows([{ topic: 't', partition: 0, offset: 'x' }], 't', [0])).toThrow(/unexpected offset/);
  });
});

describe('CommittedOffsets', () => {
  it('reads through one connected reader per group, for every partition of the topic', async () => {
    const { offsets, made } = setup();
    await expect(offsets.fetch('g', 't')).resolves.toEqual([
      { partition: 2, offset: '20' },
      { partition: 0, offset: '0' },
      { partition: 1, offset: '10' },
    ]);
    await offsets.fetch('g', 't');
    await offsets.fetch('h', 't');
    expect(made.map((m) => [m.groupId, m.stable])).toEqual([
      ['g', true],
      ['h', true],
    ]);
    expect(made[0]?.reader.connects).toBe(1);
    expect(made[0]?.reader.calls).toHaveLength(2);
    expect(made[0]?.reader.calls[0]).toEqual({
      partitions: [
        { topic: 't', partition: 2 },
        { topic: 't', partition: 0 },
        { topic: 't', partition: 1 },
      ],
      timeoutMs: 1234,
    });
  });

  it('shares one request among concurrent reads of the same group and topic', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const reader = new FakeReader();
    reader.answer = async (partitions) => {
      await gate;
      return partitions.map(({ topic, partition }) => ({ topic, partition, offset: '5' }));
    };
    const offsets = new CommittedOffsets({ reader: () => reader, partitions: async () => [0], timeoutMs: 10 });
    const first = offsets.fetch('g', 't');
    const second = offsets.fetch('g', 't');
    expect(second).toBe(first);
    const other = offsets.fetch('g', 'u');
    expect(other).not.toBe(first);
    release();
    await expect(Promise.all([first, second])).resolves.toEqual([[{ partition: 0, offset: '5' }], [{ partition: 0, offset: '5' }]]);
    await other.catch(() => undefined);
    expect(reader.calls.filter((c) => c.partitions[0]?.topic === 't')).toHaveLength(1);
    // Once answered, the next read asks again.
    await offsets.fetch('g', 't');
    expect(reader.calls.filter((c) => c.partitions[0]?.topic === 't')).toHaveLength(2);
  });

  it('reads stable offsets by default and the last committed ones through a second reader of the group', async () => {
    const { offsets, made } = setup([0]);
    await offsets.fetch('g', 't');
    await offsets.fetch('g', 't', false);
    await offsets.fetch('g', 't', true);
    await offsets.fetch('g', 't', false);
    expect(made.map((m) => [m.groupId, m.stable, m.reader.connects, m.reader.calls.length])).toEqual([
      ['g', true, 1, 2],
      ['g', false, 1, 2],
    ]);
    await offsets.close();
    expect(made.map((m) => m.reader.disconnects)).toEqual([1, 1]);
  });

  it('never shares a request between a stable and an unstable read', async () => {
    const { offsets, made } = setup([0]);
    const stable = offsets.fetch('g', 't');
    const last = offsets.fetch('g', 't', false);
    expect(last).not.toBe(stable);
    expect(offsets.fetch('g', 't', false)).toBe(last);
    expect(offsets.fetch('g', 't')).toBe(stable);
    await Promise.all([stable, last]);
    expect(made.map((m) => [m.stable, m.reader.calls.length])).toEqual([
      [true, 1],
      [false, 1],
    ]);
  });

  it('passes a failed read on and reads again next time', async () => {
    const { offsets, made } = setup([0]);
    await offsets.fetch('g', 't');
    const reader = made[0]?.reader as FakeReader;
    reader.answer = async () => {
      throw new Error('Local: Timed out');
    };
    await expect(offsets.fetch('g', 't')).rejects.toThrow('Local: Timed out');
    reader.answer = async () => [{ topic: 't', partition: 0, offset: '9' }];
    await expect(offsets.fetch('g', 't')).resolves.toEqual([{ partition: 0, offset: '9' }]);
  });

  it('replaces a reader whose connect failed', async () => {
    const made: FakeReader[] = [];
    const offsets = new CommittedOffsets({
      reader: () => {
        const reader = new FakeReader();
        if (made.length === 0) reader.failConnect = new Error('connect refused');
        made.push(reader);
        return reader;
      },
      partitions: async () => [0],
      timeoutMs: 10,
    });
    await expect(offsets.fetch('g', 't')).rejects.toThrow('connect refused');
    expect(made[0]?.disconnects).toBe(1);
    await expect(offsets.fetch('g', 't')).resolves.toEqual([{ partition: 0, offset: '0' }]);
    expect(made).toHaveLength(2);
  });

  it('answers an empty list for a topic without partitions, without a reader', async () => {
    const { offsets, made } = setup([]);
    await expect(offsets.fetch('g', 't')).resolves.toEqual([]);
    expect(made).toHaveLength(0);
  });

  it('disconnects its readers on close and refuses reads after it', async () => {
    const { offsets, made } = setup([0]);
    await offsets.fetch('g', 't');
    await offsets.fetch('h', 't');
    await offsets.close();
    expect(made.map((m) => m.reader.disconnects)).toEqual([1, 1]);
    await expect(offsets.fetch('g', 't')).rejects.toThrow(/disconnected/);
  });
});
