import { KAFKA_CLIENTS, type KafkaClientKind } from '@thorax/config';
import { CONFLUENT_PACKAGE, confluentAvailable } from './rdkafka/confluent-module';

/** A client the integration tests run against, and whether it can run here. */
export interface ClientCase {
  kind: KafkaClientKind;
  /** Why it cannot run; null when it can. */
  missing: string | null;
}

/**
 * Both clients of the port (KAFKA_CLIENT): kafkajs always, librdkafka when
 * @confluentinc/kafka-javascript loads (scripts/rdkafka.sh builds it). For integration tests that
 * run the same behaviour on both.
 */
export function clientCases(librdkafkaDir?: string): ClientCase[] {
  return KAFKA_CLIENTS.map((kind) => ({
    kind,
    missing:
      kind === 'librdkafka' && !confluentAvailable(librdkafkaDir)
        ? `${CONFLUENT_PACKAGE} is not built here (bash scripts/rdkafka.sh builds it)`
        : null,
  }));
}

/**
 * `describe` once per client: `body` gets the client kind and declares the tests. A client that
 * cannot run here gets one skipped test whose name says why, so the run report shows it.
 */
export function describeEachClient(name: string, body: (kind: KafkaClientKind) => void): void {
  for (const { kind, missing } of clientCases()) {
    if (missing) {
      describe.skip(`${name} [${kind}]`, () => it(`skipped: ${missing}`, () => undefined));
    } else {
      describe(`${name} [${kind}]`, () => body(kind));
    }
  }
}
