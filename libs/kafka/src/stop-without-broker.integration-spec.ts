/**
 * A service that cannot reach any broker stops promptly on SIGTERM, on both clients: the built
 * ingest against an address where nothing listens, stopped while its connects are in flight.
 * On librdkafka such a connect used to hold the package's disconnect, and then Node's exit, for
 * the package's 30 s metadata wait (confluent-module.ts CONNECT_METADATA_TIMEOUT_MS and
 * rdkafka-client.ts ConnectGate bound it); an orchestrator's grace period is usually 30 s.
 */
import { REPO_ROOT, startBuiltService, waitForService } from '@thorax/testing';
import path from 'node:path';
import { describeEachClient } from './client-matrix';

jest.setTimeout(90_000);

const RUN = `nobroker-${Date.now().toString(36)}`;
/** Well inside a 30 s grace period, with room for a loaded machine. */
const STOP_WITHIN_MS = 12_000;

describeEachClient('stopping with no broker reachable', (kind) => {
  it(`exits 0 within ${STOP_WITHIN_MS / 1000} s of SIGTERM while its connects are in flight`, async () => {
    // Below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a port.
    const port = kind === 'kafkajs' ? 28291 : 28292;
    const ingest = startBuiltService(
      'ingest',
      { KAFKA_CLIENT: kind, KAFKA_BROKERS: '127.0.0.1:1', HTTP_PORT: String(port), LOG_LEVEL: 'info' },
      path.join(REPO_ROOT, '.data', 'test-logs', RUN, kind),
    );
    try {
      await waitForService(ingest, `http://127.0.0.1:${port}/healthz`, 60_000);
      // Its producer, consumers and followers are connecting (and failing, and retrying) now.
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const started = Date.now();
      const code = await ingest.stop();
      const tookMs = Date.now() - started;
      // eslint-disable-next-line no-console -- the figure, for whoever compares the clients
      console.info(`${kind}: exited ${code} ${tookMs} ms after SIGTERM with no broker reachable`);
      expect(code).toBe(0);
      expect(tookMs).toBeLessThan(STOP_WITHIN_MS);
    } finally {
      await ingest.stop();
    }
  });
});
