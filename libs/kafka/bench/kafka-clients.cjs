// Kafka client benchmark: kafkajs (what libs/kafka uses) against @confluentinc/kafka-javascript
// (librdkafka) on the same broker and workload, with the guarantees the pipeline needs: acks from
// all in-sync replicas with an idempotent producer, manual commit after processing, all
// partitions consumed. Prints one line per run and the median ratios (confluent / kafkajs) of
// wall time and of this process's CPU time per record. CPU time is the steadier figure on a
// shared machine. The decision it informs is in docs/inference.md "Kafka client".
//
//   KAFKA_BROKERS=127.0.0.1:9092 node libs/kafka/bench/kafka-clients.cjs
//   CKJS_DIR=<folder whose node_modules holds @confluentinc/kafka-javascript>  (see scripts/rdkafka.sh)
//   BENCH_SIZES=65536:3000,250000:1000   record bytes:count per size; BENCH_ROUNDS=3
'use strict';
const { createRequire } = require('node:module');
const path = require('node:path');
const { Kafka, logLevel, Partitioners } = require('kafkajs');

const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const sizes = (process.env.BENCH_SIZES || '65536:3000,250000:1000').split(',').map((s) => s.split(':').map(Number));
const rounds = Number(process.env.BENCH_ROUNDS || 3);
const partitions = 6;
const run = `bench-clients-${Date.now().toString(36)}`;

function loadConfluent() {
  const dir = process.env.CKJS_DIR || path.resolve(__dirname, '../../../.cache/confluent-kafka');
  try {
    return createRequire(path.join(dir, 'package.json'))('@confluentinc/kafka-javascript').KafkaJS;
  } catch (error) {
    console.error(`@confluentinc/kafka-javascript not found under ${dir} (${error.message}); run bash scripts/rdkafka.sh`);
    process.exit(2);
  }
}

const admin = new Kafka({ clientId: 'bench-admin', brokers, logLevel: logLevel.NOTHING }).admin();

function cpuMs(since) {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1000;
}

function messagesOf(size, count, value) {
  return Array.from({ length: count }, (_, i) => ({ key: `img-${i}`, value, headers: { traceparent: `00-${String(i + 1).padStart(32, '0')}-00f067aa0ba902b7-01` } }));
}

/** kafkajs as KafkaConnection/KafkaPublisher/RecordConsumer use it. */
const kafkajsClient = {
  name: 'kafkajs',
  async produce(topic, messages) {
    const producer = new Kafka({ clientId: 'bench-kjs', brokers, logLevel: logLevel.NOTHING }).producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    const t = Date.now();
    const c = process.cpuUsage();
    // The publisher's shape: one request in flight, what gathered meanwhile goes in the next (<= 500 records, 16 MiB).
    for (let i = 0; i < messages.length; ) {
      let bytes = 0;
      let j = i;
      while (j < messages.length && j - i < 500 && bytes + messages[j].value.length <= 16 * 1024 * 1024) bytes += messages[j++].value.length;
      await producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages: messages.slice(i, j) }] });
      i = j;
    }
    const result = { wallMs: Date.now() - t, cpuMs: cpuMs(c) };
    await producer.disconnect();
    return result;
  },
  async consume(topic, count) {
    const consumer = new Kafka({ clientId: 'bench-kjs', brokers, logLevel: logLevel.NOTHING }).consumer({
      groupId: `${topic}-kjs`,
      maxBytesPerPartition: 52_428_800,
    });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    let seen = 0;
    let sum = 0;
    let t = 0;
    let c;
    const done = new Promise((resolve) => {
      void consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: partitions,
        eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
          if (t === 0) {
            t = Date.now();
            c = process.cpuUsage();
          }
          for (const m of batch.messages) {
            sum += m.value[m.value.length - 1]; // "processing": touch the value
            resolveOffset(m.offset);
          }
          await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }]);
          await heartbeat();
          seen += batch.messages.length;
          if (seen >= count) resolve();
        },
      });
    });
    await done;
    const result = { wallMs: Date.now() - t, cpuMs: cpuMs(c), sum };
    await consumer.disconnect();
    return result;
  },
};

function confluentClient(KafkaJS) {
  const kafka = new KafkaJS.Kafka({ kafkaJS: { brokers, clientId: 'bench-ckjs', logLevel: KafkaJS.logLevel.NOTHING } });
  return {
    name: 'confluent',
    async produce(topic, messages) {
      const producer = kafka.producer({ kafkaJS: { acks: -1, idempotent: true, allowAutoTopicCreation: false }, 'linger.ms': 5 });
      await producer.connect();
      const t = Date.now();
      const c = process.cpuUsage();
      // librdkafka batches on its own: many sends in flight, each resolved on its delivery report.
      const window = 500;
      for (let i = 0; i < messages.length; i += window) {
        await Promise.all(messages.slice(i, i + window).map((m) => producer.send({ topic, messages: [m] })));
      }
      const result = { wallMs: Date.now() - t, cpuMs: cpuMs(c) };
      await producer.disconnect();
      return result;
    },
    async consume(topic, count) {
      const consumer = kafka.consumer({
        kafkaJS: { groupId: `${topic}-ckjs`, fromBeginning: true, autoCommit: false },
        'js.consumer.max.batch.size': 500,
      });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic] });
      let seen = 0;
      let sum = 0;
      let t = 0;
      let c;
      const done = new Promise((resolve) => {
        void consumer.run({
          eachBatchAutoResolve: false,
          partitionsConsumedConcurrently: partitions,
          eachBatch: async ({ batch, resolveOffset }) => {
            if (t === 0) {
              t = Date.now();
              c = process.cpuUsage();
            }
            for (const m of batch.messages) {
              sum += m.value[m.value.length - 1];
              resolveOffset(m.offset);
            }
            await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }]);
            seen += batch.messages.length;
            if (seen >= count) resolve();
          },
        });
      });
      await done;
      const result = { wallMs: Date.now() - t, cpuMs: cpuMs(c), sum };
      await consumer.disconnect();
      return result;
    },
  };
}

/** A fresh topic, retried while a busy broker settles its metadata. */
async function createTopic(topic) {
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: partitions, configEntries: [{ name: 'max.message.bytes', value: '52428800' }] }] });
      await admin.fetchTopicOffsets(topic);
      return;
    } catch (error) {
      if (attempt >= 10) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const clients = [kafkajsClient, confluentClient(loadConfluent())];
  await admin.connect();
  const rows = [];
  for (const [size, count] of sizes) {
    const value = Buffer.alloc(size, 7);
    for (let r = 0; r < rounds; r++) {
      // Alternate who goes first, so neither always meets a warmer (or busier) broker.
      const order = r % 2 === 0 ? clients : [...clients].reverse();
      for (const client of order) {
        const topic = `${run}.${client.name}.${size}.${r}`;
        await createTopic(topic);
        // Fresh message objects per run: a client may rewrite them (the confluent one converts headers in place).
        const p = await client.produce(topic, messagesOf(size, count, value));
        const c = await client.consume(topic, count);
        const row = { client: client.name, size, count, round: r, produce: p, consume: c };
        rows.push(row);
        console.log(
          `${client.name.padEnd(9)} ${String(size).padStart(6)} B x ${count}  produce ${(p.wallMs / 1000).toFixed(2)} s wall ${(p.cpuMs / count).toFixed(3)} ms cpu/rec` +
            `  consume ${(c.wallMs / 1000).toFixed(2)} s wall ${(c.cpuMs / count).toFixed(3)} ms cpu/rec`,
        );
        await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      }
    }
  }
  console.log('\nmedian ratio confluent / kafkajs (below 1: confluent faster or cheaper)');
  for (const [size] of sizes) {
    const of = (name, phase, key) => median(rows.filter((x) => x.client === name && x.size === size).map((x) => x[phase][key]));
    const ratio = (phase, key) => (of('confluent', phase, key) / of('kafkajs', phase, key)).toFixed(2);
    console.log(
      `${String(size).padStart(6)} B  produce wall ${ratio('produce', 'wallMs')} cpu ${ratio('produce', 'cpuMs')}   consume wall ${ratio('consume', 'wallMs')} cpu ${ratio('consume', 'cpuMs')}`,
    );
  }
  await admin.disconnect();
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
