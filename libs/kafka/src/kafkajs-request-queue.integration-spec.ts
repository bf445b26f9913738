import { createLogger } from '@thorax/observability';
import { testBrokers } from '@thorax/testing';
import { createKafkaClient } from './kafka-client';

jest.setTimeout(60_000);

const log = createLogger({ service: 'test', version: '0', level: 'silent' });

// kafkajs's request queue class, whose prototype createKafkaClient fixes (kafkajs-request-queue.ts).
const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as {
  prototype: { checkPendingRequests(): void };
};

describe('kafkajs request queues on a broker (createKafkaClient)', () => {
  it('leave an idle connection quiet: no 1 ms timer checks an empty queue', async () => {
    const admin = createKafkaClient(
      { brokers: testBrokers(), clientId: `thorax-idle-${Date.now().toString(36)}` },
      log,
    ).admin();
    await admin.connect();
    try {
      await admin.fetchTopicMetadata();
      await admin.listTopics();
      // Unfixed, each connection's queue checks itself about every millisecond from here on.
      const checks = jest.spyOn(RequestQueue.prototype, 'checkPendingRequests');
      try {
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(checks.mock.calls.length).toBeLessThan(10);
      } finally {
        checks.mockRestore();
      }
      // And the connection still works.
      expect(Array.isArray(await admin.listTopics())).toBe(true);
    } finally {
      await admin.disconnect();
    }
  });
});
