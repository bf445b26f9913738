#!/usr/bin/env node
'use strict';
// Entrypoint of the thorax image (/opt/thorax/bin/thorax.js) and `npx thorax` in the repository
// (package.json "bin"); the first argument picks what runs:
//
//   thorax ingest|preprocess|inference|results|topics   run that service in this process (PID 1 in a
//                                                       container, so SIGTERM reaches its drain logic)
//   thorax pipeline                                     ingest, preprocess and inference in this one
//                                                       process, handing images and tensors over in
//                                                       memory (the co-located deployment, pipeline.js)
//   thorax healthcheck [service]                        GET /healthz of the service running in this
//                                                       container; exit 0 when it answers 200
//   thorax publish|watch|dlq|models|status ...          the operator CLI (docs/cli.md); `thorax --help`
//
// In the repository the CLI runs from dist/: when dist/ has not been built yet, it is built first
// (scripts/build.mjs, a few seconds).
// The health check needs no shell or curl. Its port is HTTP_PORT, else the default port of the
// service named on the command line, else of the service this container runs (PID 1's arguments).
// With TLS_CERT_FILE set the service speaks HTTPS; the probe then accepts its certificate as is
// (it only talks to 127.0.0.1 and asks for liveness, nothing secret).
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');

/** /opt/thorax in the image (this file is bin/thorax.js), the repository root in a checkout. */
const APP_ROOT = (() => {
  for (let dir = path.resolve(__dirname, '..'); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(__dirname, '..');
  }
})();
const DEFAULT_HTTP_PORTS = { ingest: 8081, preprocess: 8082, inference: 8083, results: 8080 };
// The co-located pipeline answers health checks on ingest's port (each stage keeps its own).
const HEALTH_PORTS = { ...DEFAULT_HTTP_PORTS, pipeline: DEFAULT_HTTP_PORTS.ingest };
const COMMANDS = [...Object.keys(DEFAULT_HTTP_PORTS), 'pipeline', 'topics'];
const HEALTHCHECK_TIMEOUT_MS = 4000;

/** Runs the operator CLI in this process, building dist/ first in a checkout where it is missing. */
function cli() {
  const main = path.join(APP_ROOT, 'dist', 'apps', 'cli', 'src', 'main.js');
  if (!fs.existsSync(main)) {
    const build = path.join(APP_ROOT, 'scripts', 'build.mjs');
    if (!fs.existsSync(build)) {
      process.stderr.write(`thorax: ${main} is missing\n`);
      process.exit(1);
    }
    process.stderr.write('thorax: building dist/ (first run)\n');
    const result = require('node:child_process').spawnSync(process.execPath, [build], { cwd: APP_ROOT, stdio: ['ignore', 2, 2] });
    if (result.status !== 0) process.exit(1);
  }
  // kafkajs 2.2.4 passes a negative delay to setTimeout on Node 24 (clamped to 1 ms, harmless); the
  // services start with --disable-warning=TimeoutNegativeWarning, a command line cannot.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (warning.name !== 'TimeoutNegativeWarning') process.stderr.write(`${warning.name}: ${warning.message}\n`);
  });
  require(main);
}

/** The service PID 1 runs, when this process shares its container (docker exec, HEALTHCHECK). */
function serviceOfPid1() {
  try {
    const args = fs.readFileSync('/proc/1/cmdline', 'utf8').split('\0');
    const at = args.findIndex((arg) => arg.endsWith('thorax.js'));
    return at >= 0 ? args[at + 1] : undefined;
  } catch {
    return undefined;
  }
}

function healthcheck(service) {
  const env = process.env;
  const named = service ?? serviceOfPid1();
  const port = env.HTTP_PORT ? Number(env.HTTP_PORT) : named === 'pipeline' && env.INGEST_HTTP_PORT ? Number(env.INGEST_HTTP_PORT) : HEALTH_PORTS[named];
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    process.stderr.write(`healthcheck: no HTTP port (HTTP_PORT unset and no service known for "${named}")\n`);
    process.exit(2);
  }
  const secure = Boolean(env.TLS_CERT_FILE);
  const client = secure ? https : http;
  const url = `${secure ? 'https' : 'http'}://127.0.0.1:${port}/healthz`;
  const request = client.get(url, { timeout: HEALTHCHECK_TIMEOUT_MS, rejectUnauthorized: false }, (response) => {
    response.resume();
    if (response.statusCode === 200) process.exit(0);
    process.stderr.write(`healthcheck: ${url} answered ${response.statusCode}\n`);
    process.exit(1);
  });
  request.on('timeout', () => request.destroy(new Error(`no answer within ${HEALTHCHECK_TIMEOUT_MS} ms`)));
  request.on('error', (error) => {
    process.stderr.write(`healthcheck: ${url}: ${error.message}\n`);
    process.exit(1);
  });
}

const [command, argument] = process.argv.slice(2);
if (command === 'healthcheck') {
  healthcheck(argument);
} else if (COMMANDS.includes(command)) {
  process.title = `thorax-${command}`;
  // Relative paths in configuration mean the same whatever working directory the runtime sets.
  process.chdir(APP_ROOT);
  if (command === 'pipeline') require(path.join(__dirname, 'pipeline.js'));
  else require(path.join(APP_ROOT, 'dist', 'apps', command, 'src', 'main.js'));
} else {
  // The CLI's subcommands, --help, --version, --token; anything else gets its usage error (exit 2).
  cli();
}
