import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** The repository root (holds nx.json), from the sources or from dist/. */
export const REPO_ROOT = findRoot(__dirname);

function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'nx.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no nx.json above ${start}`);
  }
}

export interface RunningService {
  name: string;
  process: ChildProcess;
  logFile: string;
  stop(): Promise<number | null>;
}

/**
 * Starts a built service (dist/apps/<name>/src/main.js, or `script`) as a child process, logs to a
 * file.
 */
export function startBuiltService(
  name: string,
  env: Record<string, string>,
  logDir: string,
  script = path.join(REPO_ROOT, 'dist', 'apps', name, 'src', 'main.js'),
): RunningService {
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  // Ingest's DIMSE and gRPC listeners take any free port unless a test names one (11112 and 50052
  // are npm start's), so tests that run several ingests at once do not collide.
  const namesGrpc = env['GRPC_PORT'] !== undefined || env['INGEST_GRPC_PORT'] !== undefined;
  const defaults: Record<string, string> =
    name === 'ingest' ? { INGEST_DIMSE_PORT: '0', ...(namesGrpc ? {} : { INGEST_GRPC_PORT: '0' }) } : {};
  const child = spawn(
    process.execPath,
    // kafkajs 2.2.4 passes a negative delay to setTimeout on Node 24 (clamped to 1 ms, harmless).
    [
      '--enable-source-maps',
      '--disable-warning=TimeoutNegativeWarning',
      script,
    ],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...defaults, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  return {
    name,
    process: child,
    logFile,
    stop: () =>
      new Promise((resolve) => {
        // Gone already (exited, or killed by a signal: then no 'exit' event is coming).
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
        child.once('exit', (code) => {
          clearTimeout(kill);
          resolve(code);
        });
        child.kill('SIGTERM');
      }),
  };
}

/** Polls an HTTP URL until it answers 200. */
export async function waitForHttp(url: string, timeoutMs: number, isAlive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`process behind ${url} exited`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
      last = `${res.status} ${await res.text()}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms: ${last}`);
}

/** The last `lines` lines of a log file ('' when there is none yet). */
export function logTail(file: string, lines = 40): string {
  if (!existsSync(file)) return '';
  return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
}

/**
 * Polls a started service's URL (its `/readyz`) until it answers 200; when the process exits
 * first, or the wait times out, the error carries the tail of its log, so that a CI run that
 * keeps nothing but its output still says why.
 */
export async function waitForService(service: RunningService, url: string, timeoutMs: number): Promise<void> {
  try {
    await waitForHttp(url, timeoutMs, () => service.process.exitCode === null && service.process.signalCode === null);
  } catch (error) {
    const code = service.process.exitCode ?? service.process.signalCode;
    const tail = logTail(service.logFile);
    throw new Error(
      `${service.name}: ${(error as Error).message}${code === null ? '' : ` (exit ${code})`}; ${service.logFile} ends:\n${tail}`,
    );
  }
}

export type ServiceName = 'ingest' | 'preprocess' | 'inference' | 'results';

export interface ServicePorts {
  results: number;
  ingest: number;
  preprocess: number;
  inference: number;
  resultsGrpc: number;
}

/** HTTP ports base..base+3 (results, ingest, preprocess, inference), results gRPC on base+10. */
export function servicePorts(base: number): ServicePorts {
  return { results: base, ingest: base + 1, preprocess: base + 2, inference: base + 3, resultsGrpc: base + 10 };
}

/**
 * Starts built services on their own ports with a shared environment and waits until every one
 * reports ready (results first, ingest last, as npm start does).
 */
export async function startServices(options: {
  ports: ServicePorts;
  env: Record<string, string>;
  logDir: string;
  names?: ServiceName[];
  readyTimeoutMs?: number;
}): Promise<Map<ServiceName, RunningService>> {
  const names = options.names ?? ['results', 'inference', 'preprocess', 'ingest'];
  const services = new Map<ServiceName, RunningService>();
  for (const name of names) {
    const grpc: Record<string, string> = name === 'results' ? { GRPC_PORT: String(options.ports.resultsGrpc) } : {};
    services.set(
      name,
      startBuiltService(name, { ...options.env, ...grpc, HTTP_PORT: String(options.ports[name]) }, options.logDir),
    );
  }
  try {
    await Promise.all(
      [...services].map(([name, s]) =>
        waitForService(s, `http://127.0.0.1:${options.ports[name]}/readyz`, options.readyTimeoutMs ?? 120_000),
      ),
    );
  } catch (error) {
    await Promise.all([...services.values()].map((s) => s.stop()));
    throw error;
  }
  return services;
}
