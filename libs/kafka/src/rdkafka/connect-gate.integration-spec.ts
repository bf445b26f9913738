/**
 * A transactional producer of the librdkafka client disconnected while it still connects, as a
 * rebalance does to a partition whose producer is starting: both calls settle, and the next
 * producer with the same transactional id starts and commits (KAFKA_BROKERS). Without the
 * client's ConnectGate the package's connect() never settled and the service could not stop.
 */
import { createLogger } from '@thorax/observability';
import { testBrokers } from '@thorax/testing';
import { createClient } from '../client-port';
import { clientCases } from '../client-matrix';

jest.setTimeout(60_000);

const log = createLogger({ service: 'itest', version: '0', level: 'silent' });
const librdkafka = clientCases().find((c) => c.kind === 'librdkafka')!;
const describeRdkafka = librdkafka.missing ? describe.skip : describe;
const within = <T>(promise: Promise<T>, ms: number, what: string): Promise<T> =>
  Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what} did not settle in ${ms} ms`)), ms).unref())]);

describeRdkafka(`librdkafka client: disconnect during connect${librdkafka.missing ? ` (skipped: ${librdkafka.missing})` : ''}`, () => {
  it.each([1, 30])('settles both calls when the disconnect comes %i ms after the connect', async (delayMs) => {
    const client = createClient({ brokers: testBrokers(), clientId: 'thorax-gate-itest', client: 'librdkafka' }, log);
    const id = `gate-itest-${Date.now().toString(36)}-${delayMs}`;
    const settings = { idempotent: true, maxInFlightRequests: 1, retries: 10, transactional: { id, timeoutMs: 60_000 } };
    const producer = client.producer(settings);
    const connecting = producer.connect().then(
      () => 'connected',
      () => 'refused',
    );
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    await within(producer.disconnect(), 20_000, 'disconnect');
    expect(['connected', 'refused']).toContain(await within(connecting, 20_000, 'connect'));

    // The partition's next claim: a new producer with the same id starts and commits.
    const next = client.producer(settings);
    await within(next.connect(), 20_000, 'the next connect');
    const transaction = await next.transaction();
    await transaction.commit();
    await next.disconnect();
  });
});
