import { loadConfig } from '@thorax/config';
import { encodeFindingsEvent, errorFindingsEvent } from '@thorax/contracts';
import type { FollowedRecord, TopicFollower } from '@thorax/kafka';
import type { Logger } from '@thorax/observability';
import { ingestConfigSchema } from '../config';
import { EdgeError, grpcStatusOf, httpStatusOf } from './edge-error';
import { FindingsWaiter } from './findings-waiter';

class FakeFollower {
  ready = true;
  onRecord: (record: FollowedRecord) => void = () => undefined;
  async start(_spec: unknown, onRecord: (record: FollowedRecord) => void): Promise<void> {
    this.onRecord = onRecord;
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
}

const log = { warn: jest.fn(), info: jest.fn() } as unknown as Logger;

function setup(env: Record<string, string> = {}) {
  const follower = new FakeFollower();
  const waiter = new FindingsWaiter(loadConfig(ingestConfigSchema, env), follower as unknown as TopicFollower, log);
  waiter.onApplicationBootstrap();
  const deliver = (id: string, key = id) =>
    follower.onRecord({
      key,
      value: encodeFindingsEvent(
        errorFindingsEvent({ id, receivedAt: new Date(), error: { code: 'CORRUPT_IMAGE', stage: 'preprocess', message: 'x' } }),
      ),
      headers: {},
      partition: 0,
    });
  return { follower, waiter, deliver };
}

describe('FindingsWaiter', () => {
  it('settles every wait of an id with its event, ignores other ids and releases the slots', async () => {
    const { waiter, deliver } = setup();
    const a = waiter.wait('img-a', 5000);
    const a2 = waiter.wait('img-a', 5000);
    const b = waiter.wait('img-b', 5000);
    expect(waiter.waiting).toBe(3);
    deliver('other');
    deliver('img-a');
    expect((await a.result).id).toBe('img-a');
    expect((await a2.result).error?.code).toBe('CORRUPT_IMAGE');
    expect(waiter.waiting).toBe(1);
    b.cancel();
    expect(waiter.waiting).toBe(0);
  });

  it('times out with PREDICT_TIMEOUT and frees the slot', async () => {
    const { waiter } = setup();
    const wait = waiter.wait('slow', 20);
    const error = await wait.result.catch((e: unknown) => e);
    expect((error as EdgeError).code).toBe('PREDICT_TIMEOUT');
    expect(waiter.waiting).toBe(0);
  });

  it('refuses beyond INGEST_PREDICT_MAX_WAITS (429) and while the topic is not followed (503)', () => {
    const { waiter, follower } = setup({ INGEST_PREDICT_MAX_WAITS: '2' });
    waiter.wait('1', 5000);
    waiter.wait('2', 5000);
    expect(() => waiter.wait('3', 5000)).toThrow(expect.objectContaining({ code: 'TOO_MANY_REQUESTS' }));
    follower.ready = false;
    expect(() => waiter.wait('4', 5000)).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
  });

  it('ignores a record whose value does not match the schema or whose event id differs from its key', async () => {
    const { waiter, follower, deliver } = setup();
    const wait = waiter.wait('img-x', 200);
    follower.onRecord({ key: 'img-x', value: Buffer.from('{"not":"an event"}'), headers: {}, partition: 0 });
    deliver('img-y', 'img-x');
    expect(((await wait.result.catch((e: unknown) => e)) as EdgeError).code).toBe('PREDICT_TIMEOUT');
  });
});

describe('edge status mapping (docs/error-codes.md)', () => {
  it.each([
    ['UNSUPPORTED_MODALITY', 422, 3],
    ['CORRUPT_IMAGE', 422, 3],
    ['OBJECT_NOT_FOUND', 422, 3],
    ['PAYLOAD_TOO_LARGE', 413, 3],
    ['IMAGE_TOO_LARGE', 413, 3],
    ['UNSUPPORTED_MEDIA_TYPE', 415, 3],
    ['INFERENCE_FAILED', 500, 13],
    ['INTERNAL_ERROR', 500, 13],
    ['TOO_MANY_REQUESTS', 429, 8],
    ['UNAVAILABLE', 503, 14],
    ['PREDICT_TIMEOUT', 504, 4],
  ] as const)('%s → HTTP %i, gRPC %i', (code, http, grpc) => {
    expect(httpStatusOf(code)).toBe(http);
    expect(grpcStatusOf(code)).toBe(grpc);
  });
});
