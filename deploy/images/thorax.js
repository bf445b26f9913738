'use strict';
// Entrypoint of the thorax image (/opt/thorax/bin/thorax.js); the first argument picks the deployable:
//
//   thorax ingest|preprocess|inference|results|topics   run that service in this process (PID 1 in a
//                                                       container, so SIGTERM reaches its drain logic)
//   thorax healthcheck [service]                        GET /healthz of the service running in this
//                                                       container; exit 0 when it answers 200
//
// The health check needs no shell or curl. Its port is HTTP_PORT, else the default port of the
// service named on the command line, else of the service this container runs (PID 1's arguments).
// With TLS_CERT_FILE set the service speaks HTTPS; the probe then accepts its certificate as is
// (it only talks to 127.0.0.1 and asks for liveness, nothing secret).
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');

const APP_ROOT = path.resolve(__dirname, '..');
const DEFAULT_HTTP_PORTS = { ingest: 8081, preprocess: 8082, inference: 8083, results: 8080 };
const COMMANDS = [...Object.keys(DEFAULT_HTTP_PORTS), 'topics'];
const HEALTHCHECK_TIMEOUT_MS = 4000;

function usage(stream) {
  stream.write(`usage: thorax <${COMMANDS.join('|')}> | thorax healthcheck [service]\n`);
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
  const port = env.HTTP_PORT ? Number(env.HTTP_PORT) : DEFAULT_HTTP_PORTS[named];
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
  require(path.join(APP_ROOT, 'dist', 'apps', command, 'src', 'main.js'));
} else if (command === undefined || command === 'help' || command === '--help') {
  usage(process.stdout);
} else {
  process.stderr.write(`thorax: unknown command "${command}"\n`);
  usage(process.stderr);
  process.exit(64);
}
