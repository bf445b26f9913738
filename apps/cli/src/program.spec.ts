import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EXIT } from './exit-codes';
import { runCli } from './program';

/** Runs the CLI in-process with no broker or service reachable: only what fails before any I/O. */
async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += String(chunk)), true));
  const e = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true));
  try {
    const code = await runCli(['node', 'thorax', ...args], { env: { KAFKA_BROKERS: '127.0.0.1:1', LOG_LEVEL: 'silent', ...env }, stopSignal: new Promise(() => undefined) });
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('thorax command line', () => {
  it('prints help for the program and every subcommand, exit 0', async () => {
    const top = await run(['--help']);
    expect(top.code).toBe(EXIT.OK);
    for (const c of ['publish', 'watch', 'dlq', 'models', 'status']) expect(top.out).toContain(c);
    expect(top.out).toContain('Exit codes: 0 ok, 1 failure, 2 usage');
    for (const sub of [['publish'], ['watch'], ['dlq', 'list'], ['dlq', 'show'], ['dlq', 'replay'], ['models', 'canary'], ['status']]) {
      const help = await run([...sub, '--help']);
      expect({ sub, code: help.code }).toEqual({ sub, code: EXIT.OK });
      expect(help.out).toContain(`Usage: thorax ${sub.join(' ')}`);
    }
  });

  it('answers usage errors with exit 2', async () => {
    expect((await run(['publish'])).code).toBe(EXIT.USAGE);
    expect((await run(['nonsense'])).code).toBe(EXIT.USAGE);
    expect((await run(['models'])).code).toBe(EXIT.USAGE);
    expect((await run(['watch', '--status', 'maybe'])).code).toBe(EXIT.USAGE);
    expect((await run(['dlq', 'replay', '--rate', '-1', '--all'])).code).toBe(EXIT.USAGE);
    const replay = await run(['dlq', 'replay']);
    expect(replay).toMatchObject({ code: EXIT.USAGE, err: expect.stringContaining('say which dead letters to replay') });
    expect((await run(['dlq', 'show', 'not-a-position'])).code).toBe(EXIT.USAGE);
    expect((await run(['models', 'canary', '2.0.0'])).code).toBe(EXIT.USAGE);
    expect((await run(['publish', '/no/such/file.dcm'])).code).toBe(EXIT.USAGE);
  });

  it('stops on bad configuration with exit 78, naming the variable', async () => {
    const bad = await run(['status'], { KAFKA_BROKERS: 'no-port' });
    expect(bad.code).toBe(EXIT.CONFIG);
    expect(bad.err).toContain('KAFKA_BROKERS');
    const url = await run(['models', 'list'], { THORAX_INFERENCE_URL: 'ftp://x' });
    expect(url).toMatchObject({ code: EXIT.CONFIG, err: expect.stringContaining('THORAX_INFERENCE_URL') });
  });

  it('reports an unreachable service as a failure, exit 1', async () => {
    const down = await run(['models', 'list'], { THORAX_INFERENCE_URL: 'http://127.0.0.1:1', THORAX_HTTP_TIMEOUT_MS: '2000' });
    expect(down).toMatchObject({ code: EXIT.FAILURE, err: expect.stringContaining('GET http://127.0.0.1:1/v1/models') });
  });

  it('sends THORAX_TOKEN (or --token) as a bearer token, and exits 5 when the API refuses it', async () => {
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      seen.push(req.headers.authorization);
      const ok = req.headers.authorization === 'Bearer admin-token';
      res.writeHead(ok ? 500 : req.headers.authorization ? 403 : 401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: ok ? 'INTERNAL' : 'PERMISSION_DENIED', message: 'no' } }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect((await run(['models', 'list'], { THORAX_INFERENCE_URL: url })).code).toBe(EXIT.UNAUTHORIZED);
      const refused = await run(['models', 'activate', '2.0.0'], { THORAX_INFERENCE_URL: url, THORAX_TOKEN: 'reader-token' });
      expect(refused).toMatchObject({ code: EXIT.UNAUTHORIZED, err: expect.stringContaining('with the admin scope') });
      // --token wins over THORAX_TOKEN; an accepted token with a failing answer is exit 1.
      expect((await run(['--token', 'admin-token', 'models', 'list'], { THORAX_INFERENCE_URL: url, THORAX_TOKEN: 'reader-token' })).code).toBe(EXIT.FAILURE);
      expect(seen).toEqual([undefined, 'Bearer reader-token', 'Bearer admin-token']);
    } finally {
      server.close();
    }
  });
});
