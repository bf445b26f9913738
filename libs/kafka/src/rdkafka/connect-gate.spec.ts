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
  it('makes a disconnect wait for the connect in flight, and joins a second connect to it', async () => {
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
    let settled = false;
    const waiting = gate.settled().then(() => {
      settled = true;
    });
    await Promise.resolve();
    expect(settled).toBe(false);
    started.resolve();
    await Promise.all([first, second, waiting]);
    expect(settled).toBe(true);
    expect(calls).toBe(1);
  });

  it('settles after a failed connect without throwing, and connects afresh next time', async () => {
    const gate = new ConnectGate();
    const failing = deferred();
    const first = gate.connect(() => failing.promise);
    const waiting = gate.settled();
    failing.reject(new Error('broker unreachable'));
    await expect(first).rejects.toThrow('broker unreachable');
    await expect(waiting).resolves.toBeUndefined();
    let again = 0;
    await gate.connect(async () => {
      again += 1;
    });
    expect(again).toBe(1);
    await expect(gate.settled()).resolves.toBeUndefined();
  });

  it('stops waiting for a connect that never settles after its bound', async () => {
    const gate = new ConnectGate();
    void gate.connect(() => new Promise<void>(() => undefined)).catch(() => undefined);
    const started = Date.now();
    await gate.settled(50);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
