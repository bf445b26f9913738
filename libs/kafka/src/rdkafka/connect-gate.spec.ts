import { ConnectGate } from './rdkafka-client';

/** A promise and the functions that settle it. */
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('ConnectGate', () => {
  const noLateError = (error: unknown) => {
    throw new Error(`unexpected late close failure: ${String(error)}`);
  };

  it('closes only after the connect in flight, and joins a second connect to it', async () => {
    const gate = new ConnectGate();
    const started = deferred();
    let calls = 0;
    const first = gate.connect(() => {
      calls += 1;
      return started.promise;
    });
    const second = gate.connect(() => {
      calls += 1;
      return Promise.resolve();
    });
    const order: string[] = [];
    void first.then(() => order.push('connected'));
    const closing = gate.close(async () => void order.push('closed'), noLateError);
    await Promise.resolve();
    expect(order).toEqual([]);
    started.resolve();
    await Promise.all([first, second, closing]);
    expect(order).toEqual(['connected', 'closed']);
    expect(calls).toBe(1);
  });

  it('closes after a failed connect, and connects afresh next time', async () => {
    const gate = new ConnectGate();
    const failing = deferred();
    const first = gate.connect(() => failing.promise);
    let closed = 0;
    const closing = gate.close(async () => void (closed += 1), noLateError);
    failing.reject(new Error('broker unreachable'));
    await expect(first).rejects.toThrow('broker unreachable');
    await closing;
    expect(closed).toBe(1);
    let again = 0;
    await gate.connect(async () => {
      again += 1;
    });
    expect(again).toBe(1);
    await gate.close(async () => void (closed += 1), noLateError);
    expect(closed).toBe(2);
  });

  it('passes a close failure to its caller when it runs in time', async () => {
    const gate = new ConnectGate();
    await expect(gate.close(() => Promise.reject(new Error('close refused')), noLateError)).rejects.toThrow(
      'close refused',
    );
  });

  it('returns after its bound for a connect still in flight, and closes in the background once it ends', async () => {
    const gate = new ConnectGate();
    const hanging = deferred();
    const connecting = gate.connect(() => hanging.promise);
    let closed = false;
    const late: unknown[] = [];
    const started = Date.now();
    await gate.close(
      async () => {
        closed = true;
      },
      (error) => late.push(error),
      50,
    );
    expect(Date.now() - started).toBeLessThan(5_000);
    // The package is never told to close while it still connects.
    expect(closed).toBe(false);
    hanging.resolve();
    await connecting;
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(true);
    expect(late).toEqual([]);
  });

  it('reports a background close that fails', async () => {
    const gate = new ConnectGate();
    const hanging = deferred();
    const connecting = gate.connect(() => hanging.promise).catch(() => undefined);
    const late: unknown[] = [];
    await gate.close(
      () => Promise.reject(new Error('close refused')),
      (error) => late.push(error),
      10,
    );
    hanging.reject(new Error('TLS handshake failed'));
    await connecting;
    await new Promise((resolve) => setImmediate(resolve));
    expect(late).toEqual([new Error('close refused')]);
  });
});
