import { ThoraxError } from '@thorax/contracts';
import { createLogger, ThoraxMetrics } from '@thorax/observability';
import { KafkaJSError } from 'kafkajs';
import { type ConsumerSpec, type Delivery, ITEM_OK } from './consumer-port';
import { LocalTopics, RoutingPublisher, stamped } from './local-topics';
import { encodedRecord, type OutgoingRecord, type Publisher } from './records';

const log = createLogger({ service: 'test', version: '0', level: 'silent' });
const metrics = new ThoraxMetrics('preprocess');

const spec = (topic: string): ConsumerSpec<string> => ({
  groupId: 'g',
  topic,
  stage: 'preprocess',
  findingsTopic: 'findings',
  decode: (value) => {
    if (value.length === 0) throw new ThoraxError('INVALID_MESSAGE', 'empty', { stage: 'preprocess' });
    return value.toString('utf8');
  },
});

const record = (topic: string, value: string, headers: Record<string, string> = {}): OutgoingRecord => ({
  topic,
  key: `key-${value}`,
  value: Buffer.from(value),
  headers,
});

async function okCount(topic: string): Promise<number> {
  const text = await metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith('thorax_messages_total{') && l.includes(`topic="${topic}"`) && l.includes('outcome="ok"'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('LocalTopics', () => {
  it('hands a record to the registered handler, decoded, and resolves once it is handled', async () => {
    const local = new LocalTopics(new Set(['images']));
    const seen: Delivery<string>[] = [];
    let release: () => void = () => undefined;
    const handled = new Promise<void>((r) => (release = r));
    local.register(spec('images'), { kind: 'single', handler: { handle: async (d) => { seen.push(d); await handled; } } }, metrics, log);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    let resolved = false;
    const delivered = local.deliver([record('images', 'pixels', { traceparent, 'x-other': 'dropped' })]).then(() => (resolved = true));
    await new Promise((r) => setImmediate(r));
    expect(seen).toHaveLength(1);
    expect(seen[0]!.message).toBe('pixels');
    expect(seen[0]!.position.key).toBe('key-pixels');
    expect(seen[0]!.forward).toEqual({ traceparent });
    expect(resolved).toBe(false);
    release();
    await delivered;
    expect(await okCount('images')).toBe(1);
  });

  it('rejects with the failure stamped with the failing stage, and hands batch handlers a batch of one', async () => {
    const local = new LocalTopics(new Set(['tensors']));
    const failure = new Error('session exploded');
    local.register(spec('tensors'), { kind: 'batch', handler: { handleBatch: async (ds) => ds.map(() => ({ ok: false, error: failure })) } }, metrics, log);
    const error = await local.deliver([record('tensors', 'x')]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ThoraxError);
    expect(error).toMatchObject({ code: 'INTERNAL_ERROR', message: 'session exploded', transient: true, options: { stage: 'preprocess' } });
  });

  it('keeps the code of a ThoraxError and passes broker failures through unchanged', () => {
    const corrupt = new ThoraxError('CORRUPT_IMAGE', 'bad png');
    expect(stamped(corrupt, 'preprocess')).toMatchObject({ code: 'CORRUPT_IMAGE', transient: false, options: { stage: 'preprocess' } });
    const ingest = new ThoraxError('CORRUPT_IMAGE', 'bad png', { stage: 'ingest' });
    expect(stamped(ingest, 'preprocess')).toBe(ingest);
    const broker = new KafkaJSError('leader moved', { retriable: true });
    expect(stamped(broker, 'inference')).toBe(broker);
  });

  it('hands over the message of an encodedRecord without encoding it; a record sent to Kafka is encoded once', async () => {
    const local = new LocalTopics(new Set(['images']));
    const seen: unknown[] = [];
    local.register(spec('images'), { kind: 'single', handler: { handle: async (d) => void seen.push(d.message) } }, metrics, log);
    const sent: Buffer[] = [];
    const kafka: Publisher = { publish: async (records) => void sent.push(...records.map((r) => r.value)) };
    const routing = new RoutingPublisher(local, kafka);
    let encoded = 0;
    const encode = (m: { text: string }) => (encoded++, Buffer.from(m.text));
    const kept = { text: 'kept as it is' };
    await routing.publish([encodedRecord({ topic: 'images', key: 'a' }, kept, encode), encodedRecord({ topic: 'findings', key: 'b' }, { text: 'sent' }, encode)]);
    expect(seen).toEqual([kept]);
    expect(seen[0]).toBe(kept);
    expect(sent.map((b) => b.toString())).toEqual(['sent']);
    expect(encoded).toBe(1);
  });

  it('a value that does not decode fails the publish with its coded error', async () => {
    const local = new LocalTopics(new Set(['images']));
    local.register(spec('images'), { kind: 'single', handler: { handle: async () => undefined } }, metrics, log);
    await expect(local.deliver([record('images', '')])).rejects.toMatchObject({ code: 'INVALID_MESSAGE' });
  });

  it('holds hand-offs while the consumer is paused', async () => {
    const local = new LocalTopics(new Set(['images']));
    const handled: string[] = [];
    const consumption = local.register(spec('images'), { kind: 'single', handler: { handle: async (d) => void handled.push(d.message) } }, metrics, log);
    consumption.pause();
    const delivered = local.deliver([record('images', 'a')]);
    await new Promise((r) => setTimeout(r, 20));
    expect(handled).toEqual([]);
    consumption.resume();
    await delivered;
    expect(handled).toEqual(['a']);
  });

  it('waits for the consuming stage to register, and gives up with a redeliverable error', async () => {
    const local = new LocalTopics(new Set(['images']), 50);
    const delivered = local.deliver([record('images', 'early')]);
    local.register(spec('images'), { kind: 'batch', handler: { handleBatch: async (ds) => ds.map(() => ITEM_OK) } }, metrics, log);
    await expect(delivered).resolves.toBeUndefined();
    const alone = new LocalTopics(new Set(['tensors']), 20);
    await expect(alone.deliver([record('tensors', 'x')])).rejects.toMatchObject({ code: 'INTERNAL_ERROR', redeliver: true });
  });

  it('refuses a second consumer of one local topic and a topic that is not local', () => {
    const local = new LocalTopics(new Set(['images']));
    const handling = { kind: 'single' as const, handler: { handle: async () => undefined } };
    local.register(spec('images'), handling, metrics, log);
    expect(() => local.register(spec('images'), handling, metrics, log)).toThrow(/already has a local consumer/);
    expect(() => local.register(spec('findings'), handling, metrics, log)).toThrow(/not a local topic/);
  });
});

describe('RoutingPublisher', () => {
  it('sends local topics in process and the rest to Kafka, resolving when both are done', async () => {
    const local = new LocalTopics(new Set(['images']));
    const handled: string[] = [];
    local.register(spec('images'), { kind: 'single', handler: { handle: async (d) => void handled.push(d.message) } }, metrics, log);
    const sent: OutgoingRecord[][] = [];
    const kafka: Publisher = { publish: async (records) => void sent.push(records) };
    const publisher = new RoutingPublisher(local, kafka);
    await publisher.publish([record('images', 'a'), record('findings', 'b'), record('images', 'c')]);
    expect(handled.sort()).toEqual(['a', 'c']);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.map((r) => r.topic)).toEqual(['findings']);
    await publisher.publish([record('findings', 'd')], { alone: true });
    expect(sent).toHaveLength(2);
  });
});
