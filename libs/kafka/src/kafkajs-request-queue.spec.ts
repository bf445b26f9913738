import { fixKafkajsRequestQueueTimer } from './kafkajs-request-queue';

const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (options: Record<string, unknown>) => {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: NodeJS.Timeout | null;
  checkPendingRequests(): void;
  scheduleCheckPendingRequests(): void;
  destroy(): void;
};

const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function queue(maxInFlightRequests: number) {
  return new RequestQueue({
    maxInFlightRequests,
    requestTimeout: 30_000,
    enforceRequestTimeout: false,
    clientId: 'test',
    broker: 'b:9092',
    logger: () => logger,
  });
}

describe('fixKafkajsRequestQueueTimer', () => {
  beforeAll(() => {
    expect(fixKafkajsRequestQueueTimer()).toBe(true);
    expect(fixKafkajsRequestQueueTimer()).toBe(true); // idempotent
  });

  it('arms no timer for a queue with nothing pending', () => {
    const q = queue(1);
    try {
      q.checkPendingRequests();
      expect(q.throttleCheckTimeoutId).toBeNull();
    } finally {
      q.destroy();
    }
  });

  it("keeps kafkajs's timer for pending requests: the throttle's end, else 10 ms", () => {
    jest.useFakeTimers();
    const q = queue(0); // nothing may go out: every request stays pending
    const checks = jest.spyOn(q, 'checkPendingRequests');
    try {
      q.pending.push({});
      q.scheduleCheckPendingRequests();
      expect(q.throttleCheckTimeoutId).not.toBeNull();
      jest.advanceTimersByTime(9);
      expect(checks).not.toHaveBeenCalled();
      jest.advanceTimersByTime(1);
      expect(checks).toHaveBeenCalledTimes(1);

      q.throttledUntil = Date.now() + 250;
      jest.advanceTimersByTime(10); // the re-check armed by the check above runs, and arms the throttle's end
      const before = checks.mock.calls.length;
      jest.advanceTimersByTime(200);
      expect(checks.mock.calls.length).toBe(before);
      jest.advanceTimersByTime(60); // past the throttle's end
      expect(checks.mock.calls.length).toBeGreaterThan(before);
    } finally {
      q.destroy();
      jest.useRealTimers();
    }
  });
});
