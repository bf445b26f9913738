/**
 * Observability of the whole pipeline, checked with the real tools: the four built services on
 * fresh topics, a real Prometheus server (Debian's `prometheus`, started from the shipped
 * deploy/prometheus/prometheus.yml with test ports and the shipped rules) scraping them, promtool
 * on every /metrics, the Grafana dashboard's queries against live scrapes and the server, and
 * the services' JSON logs searched for patient identifiers and trace ids.
 *
 * Needs KAFKA_BROKERS (npm test starts a broker) and prometheus + promtool on PATH or in
 * PROMETHEUS_BIN / PROMTOOL_BIN (`bash scripts/prometheus.sh ensure`). Ports: services on
 * THORAX_OBS_E2E_PORT_BASE (default 48080; results, ingest, preprocess, inference), results gRPC
 * on THORAX_OBS_E2E_GRPC_PORT (48090), Prometheus on THORAX_OBS_E2E_PROMETHEUS_PORT (49090).
 */
import { credentials } from '@grpc/grpc-js';
import { decodeFindingsEvent, type FindingsEvent, ResultsServiceClient } from '@thorax/contracts';
import {
  collect,
  type PlainRecord,
  produce,
  REPO_ROOT,
  type RunningService,
  startBuiltService,
  syntheticChestXray,
  testBrokers,
  testKafka,
  waitForHttp,
} from '@thorax/testing';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';

jest.setTimeout(240_000);

const letters = (n: number) => Array.from({ length: n }, () => String.fromCharCode(97 + randomInt(26))).join('');
const RUN = `obs${letters(8)}`;
const BASE = Number(process.env['THORAX_OBS_E2E_PORT_BASE'] ?? 48080);
const PORTS = {
  results: BASE,
  ingest: BASE + 1,
  preprocess: BASE + 2,
  inference: BASE + 3,
  resultsGrpc: Number(process.env['THORAX_OBS_E2E_GRPC_PORT'] ?? 48090),
  prometheus: Number(process.env['THORAX_OBS_E2E_PROMETHEUS_PORT'] ?? 49090),
};
const SERVICES = ['results', 'inference', 'preprocess', 'ingest'] as const;
type ServiceName = (typeof SERVICES)[number];
const TOPICS = {
  studies: `thorax-${RUN}.studies.v1`,
  images: `thorax-${RUN}.images.v1`,
  tensors: `thorax-${RUN}.tensors.v1`,
  findings: `thorax-${RUN}.findings.v1`,
};
const TOPIC_OF: Record<ServiceName, string> = {
  ingest: TOPICS.studies,
  preprocess: TOPICS.images,
  inference: TOPICS.tensors,
  results: TOPICS.findings,
};
const PROMETHEUS = `http://127.0.0.1:${PORTS.prometheus}`;

// Patient identifiers that must never reach a log line, unique to this run.
const PATIENT = {
  headerId: `PID${letters(10).toUpperCase()}`,
  headerName: `Doe${letters(6)}^Jane${letters(6)}`,
  dicomId: `MRN${letters(10).toUpperCase()}`,
  dicomName: `Roe${letters(6)}^Richard${letters(6)}`,
};
const TRACE_ID = randomBytes(16).toString('hex');
const TRACEPARENT = `00-${TRACE_ID}-${randomBytes(8).toString('hex')}-01`;
const DICOM_SOP_UID = `1.2.826.0.1.3680043.10.${randomInt(1, 1e9)}.${randomInt(1, 1e9)}`;

interface Sent {
  id: string;
  value: Buffer;
  headers: Record<string, string>;
}

const kafka = testKafka('thorax-obs-e2e');
const admin = kafka.admin();
const services = new Map<ServiceName, RunningService>();
let prometheus: ChildProcess | null = null;
let prometheusData = '';
let logDir = '';
const round1: Sent[] = [];
const round2: Sent[] = [];
let findings1: PlainRecord[] = [];
let t0 = 0;
let scrapes: Record<ServiceName, string>;

// ── helpers ────────────────────────────────────────────────────────────────────────────────

interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

async function promQuery(query: string, time?: number): Promise<PromSample[]> {
  const params = new URLSearchParams({ query });
  if (time !== undefined) params.set('time', String(time));
  const res = await fetch(`${PROMETHEUS}/api/v1/query?${params}`);
  const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
  if (body.status !== 'success') throw new Error(`PromQL ${query}: ${body.error}`);
  const data = body.data as { resultType: string; result: PromSample[] | [number, string] };
  return data.resultType === 'scalar' ? [{ metric: {}, value: data.result as [number, string] }] : (data.result as PromSample[]);
}

/** Polls until `check` returns a value that is not undefined, or throws with the last state. */
async function eventually<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms (${String(last ?? '')})`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function scrape(name: ServiceName): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${PORTS[name]}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

async function findingsFor(ids: string[]): Promise<PlainRecord[]> {
  const want = new Set(ids);
  const records = await collect(kafka, TOPICS.findings, (rs) => new Set(rs.map((r) => r.key).filter((k) => k && want.has(k))).size === want.size, 90_000);
  const got = records.filter((r) => r.key && want.has(r.key));
  expect(new Set(got.map((r) => r.key)).size).toBe(want.size);
  return got;
}

/** A minimal DICOM Part 10 file (explicit VR little endian, 8-bit MONOCHROME2 DX chest PA). */
function dicomFile(pixels: Buffer, width: number, height: number, tags: { sopInstanceUid: string; patientName: string; patientId: string }): Buffer {
  const element = (group: number, elem: number, vr: string, raw: Buffer): Buffer => {
    const value = raw.length % 2 ? Buffer.concat([raw, Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]) : raw;
    const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr);
    const header = Buffer.alloc(long ? 12 : 8);
    header.writeUInt16LE(group, 0);
    header.writeUInt16LE(elem, 2);
    header.write(vr, 4, 'latin1');
    if (long) header.writeUInt32LE(value.length, 8);
    else header.writeUInt16LE(value.length, 6);
    return Buffer.concat([header, value]);
  };
  const str = (s: string) => Buffer.from(s, 'latin1');
  const us = (n: number) => {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(n);
    return b;
  };
  const sopClass = '1.2.840.10008.5.1.4.1.1.1.1';
  const meta = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    element(0x0002, 0x0002, 'UI', str(sopClass)),
    element(0x0002, 0x0003, 'UI', str(tags.sopInstanceUid)),
    element(0x0002, 0x0010, 'UI', str('1.2.840.10008.1.2.1')),
    element(0x0002, 0x0012, 'UI', str('1.2.826.0.1.3680043.10.1')),
  ]);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  const dataset = Buffer.concat([
    element(0x0008, 0x0016, 'UI', str(sopClass)),
    element(0x0008, 0x0018, 'UI', str(tags.sopInstanceUid)),
    element(0x0008, 0x0060, 'CS', str('DX')),
    element(0x0010, 0x0010, 'PN', str(tags.patientName)),
    element(0x0010, 0x0020, 'LO', str(tags.patientId)),
    element(0x0018, 0x0015, 'CS', str('CHEST')),
    element(0x0018, 0x5101, 'CS', str('PA')),
    element(0x0020, 0x000d, 'UI', str(`${tags.sopInstanceUid}.1`)),
    element(0x0020, 0x000e, 'UI', str(`${tags.sopInstanceUid}.2`)),
    element(0x0028, 0x0002, 'US', us(1)),
    element(0x0028, 0x0004, 'CS', str('MONOCHROME2')),
    element(0x0028, 0x0010, 'US', us(height)),
    element(0x0028, 0x0011, 'US', us(width)),
    element(0x0028, 0x0100, 'US', us(8)),
    element(0x0028, 0x0101, 'US', us(8)),
    element(0x0028, 0x0102, 'US', us(7)),
    element(0x0028, 0x0103, 'US', us(0)),
    element(0x7fe0, 0x0010, 'OB', pixels),
  ]);
  return Buffer.concat([Buffer.alloc(128), str('DICM'), element(0x0002, 0x0000, 'UL', groupLength), meta, dataset]);
}

/** Metric names in a PromQL expression (selectors only; Grafana variables replaced). */
function metricNamesIn(expr: string): string[] {
  const keywords = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);
  const text = grafanaToPromQL(expr)
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  return [...new Set([...text.matchAll(/(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()/g)].map((m) => m[1] as string))].filter(
    (n) => !keywords.has(n),
  );
}

function grafanaToPromQL(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, '1m').replace(/\$\{?service\}?/g, '.*');
}

/** Label values that look like identifiers (the same rules as libs/observability's guard). */
function idLikeLabelValues(text: string, forbidden: string[]): string[] {
  const patterns = [
    /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i,
    /^\d+(\.\d+){4,}$/,
    /[0-9a-f]{16,}/i,
    /\d{6,}/,
    /[A-Za-z0-9+/_=-]{33,}/,
    /^[a-z][a-z0-9+.-]*:\/\//i,
  ];
  const problems: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.includes('{')) continue;
    for (const [, label, value] of line.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)) {
      if (label === 'le' || value === undefined) continue;
      if (patterns.some((p) => p.test(value)) || forbidden.some((f) => value.includes(f))) problems.push(`${label}="${value}" in ${line}`);
    }
  }
  return problems;
}

function logLines(name: ServiceName): string[] {
  return readFileSync(path.join(logDir, `${name}.log`), 'utf8').split('\n').filter((l) => l.trim() !== '');
}

/**
 * A service's log as parsed JSON lines, apart from Node.js process warnings (`(node:123)
 * SomeWarning: …` and their continuation lines) that the runtime writes to stderr on its own
 * (kafkajs 2.2.4 triggers a TimeoutNegativeWarning on Node 24: tulios/kafkajs#1751); those are
 * returned separately. Any other line that is not JSON fails.
 */
function parsedLog(name: ServiceName): { entries: Record<string, unknown>[]; runtimeWarnings: string[] } {
  const entries: Record<string, unknown>[] = [];
  const runtimeWarnings: string[] = [];
  let inWarning = false;
  for (const line of logLines(name)) {
    try {
      entries.push(JSON.parse(line) as Record<string, unknown>);
      inWarning = false;
      continue;
    } catch {
      if (/^\(node:\d+\) \w*Warning: /.test(line)) {
        inWarning = true;
        runtimeWarnings.push(line);
        continue;
      }
      if (inWarning) continue;
      throw new Error(`${name}: not a JSON log line: ${line.slice(0, 200)}`);
    }
  }
  return { entries, runtimeWarnings };
}

// ── the run ────────────────────────────────────────────────────────────────────────────────

beforeAll(async () => {
  logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
  mkdirSync(logDir, { recursive: true });
  await admin.connect();
  const all = Object.values(TOPICS).flatMap((t) => [t, `${t}.dlq`]);
  await admin.createTopics({ waitForLeaders: true, topics: all.map((topic) => ({ topic, numPartitions: 3, replicationFactor: 1 })) });

  // Prometheus from the shipped config: test ports, 1 s intervals, the shipped rules.
  let config = readFileSync(path.join(REPO_ROOT, 'deploy', 'prometheus', 'prometheus.yml'), 'utf8');
  const replacements: [string, string][] = [
    ['scrape_interval: 5s', 'scrape_interval: 1s'],
    ['evaluation_interval: 15s', 'evaluation_interval: 1s'],
    ['rules/*.rules.yml', path.join(REPO_ROOT, 'deploy', 'prometheus', 'rules', '*.rules.yml')],
    ['127.0.0.1:8080', `127.0.0.1:${PORTS.results}`],
    ['127.0.0.1:8081', `127.0.0.1:${PORTS.ingest}`],
    ['127.0.0.1:8082', `127.0.0.1:${PORTS.preprocess}`],
    ['127.0.0.1:8083', `127.0.0.1:${PORTS.inference}`],
  ];
  for (const [from, to] of replacements) {
    expect(config.includes(from)).toBe(true);
    config = config.replace(from, to);
  }
  prometheusData = mkdtempSync(path.join(os.tmpdir(), 'thorax-prometheus-'));
  writeFileSync(path.join(prometheusData, 'prometheus.yml'), config);
  const prometheusLog = createWriteStream(path.join(logDir, 'prometheus.log'));
  prometheus = spawn(
    process.env['PROMETHEUS_BIN'] ?? 'prometheus',
    [
      `--config.file=${path.join(prometheusData, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(prometheusData, 'data')}`,
      `--web.listen-address=127.0.0.1:${PORTS.prometheus}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.on('error', (error) => prometheusLog.write(`spawn failed: ${error.message}; run bash scripts/prometheus.sh ensure\n`));
  prometheus.stdout?.pipe(prometheusLog);
  prometheus.stderr?.pipe(prometheusLog);

  const common = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'debug',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
    TOPIC_STUDIES: TOPICS.studies,
    TOPIC_IMAGES: TOPICS.images,
    TOPIC_TENSORS: TOPICS.tensors,
    TOPIC_FINDINGS: TOPICS.findings,
    INGEST_GROUP_ID: `${RUN}-ingest`,
    PREPROCESS_GROUP_ID: `${RUN}-preprocess`,
    INFERENCE_GROUP_ID: `${RUN}-inference`,
    RESULTS_GROUP_ID: `${RUN}-results`,
  };
  for (const name of SERVICES) {
    const extra: Record<string, string> = name === 'results' ? { GRPC_PORT: String(PORTS.resultsGrpc) } : {};
    services.set(name, startBuiltService(name, { ...common, ...extra, HTTP_PORT: String(PORTS[name]) }, logDir));
  }
  await Promise.all([
    ...[...services].map(([name, s]) => waitForHttp(`http://127.0.0.1:${PORTS[name]}/readyz`, 120_000, () => s.process.exitCode === null)),
    waitForHttp(`${PROMETHEUS}/-/ready`, 60_000, () => prometheus?.exitCode === null),
  ]);
  await eventually('Prometheus scraping all four services', 30_000, async () => {
    const up = await promQuery('up{job="thorax"} == 1');
    return up.length === SERVICES.length ? up : undefined;
  });

  // Round 1: patient identifiers in headers and in a DICOM, a PACS trace, and failures.
  const png = await syntheticChestXray({ width: 320, height: 300, seed: 21 });
  const raw = await sharp(await syntheticChestXray({ width: 256, height: 256, seed: 22 })).greyscale().raw().toBuffer();
  const patientHeaders = { 'thorax-patient-id': PATIENT.headerId, 'thorax-patient-name': PATIENT.headerName };
  round1.push(
    {
      id: `${RUN}-png-traced`,
      value: png,
      headers: { 'content-type': 'image/png', traceparent: TRACEPARENT, 'thorax-accession': `ACC-${RUN}`, ...patientHeaders },
    },
    { id: `${RUN}-png-untraced`, value: png, headers: { 'content-type': 'image/png', ...patientHeaders } },
    {
      id: DICOM_SOP_UID,
      value: dicomFile(raw, 256, 256, { sopInstanceUid: DICOM_SOP_UID, patientName: PATIENT.dicomName, patientId: PATIENT.dicomId }),
      headers: { 'content-type': 'application/dicom' },
    },
    { id: `${RUN}-junk`, value: randomBytes(2048), headers: { 'content-type': 'image/png', ...patientHeaders } },
    { id: `${RUN}-truncated`, value: png.subarray(0, Math.floor(png.length / 2)), headers: { ...patientHeaders } },
  );
  await produce(kafka, TOPICS.studies, round1.map((s) => ({ key: s.id, value: s.value, headers: s.headers })));
  findings1 = await findingsFor(round1.map((s) => s.id));

  // T0: every target scraped after results had stored all of round 1 (scrapes are staggered, so
  // one scrape of results showing it done does not mean the others were scraped after it).
  const storedAt = await eventually('round 1 stored and scraped', 30_000, async () => {
    const now = Date.now() / 1000;
    const [stored] = await promQuery(`sum(thorax_messages_total{service="results", topic="${TOPICS.findings}"})`, now);
    return stored && Number(stored.value[1]) === round1.length ? now : undefined;
  });
  t0 = await eventually('every target scraped after round 1', 15_000, async () => {
    const now = Date.now() / 1000;
    const [oldest] = await promQuery('min(timestamp(up{job="thorax"}))', now);
    return oldest && Number(oldest.value[1]) > storedAt + 0.001 ? now : undefined;
  });

  // Round 2, the measured one: 4 valid images and 2 that ingest rejects.
  for (let i = 0; i < 4; i += 1) {
    round2.push({ id: `${RUN}-r2-ok-${i}`, value: await syntheticChestXray({ width: 280, height: 300, seed: 30 + i }), headers: {} });
  }
  round2.push({ id: `${RUN}-r2-empty`, value: Buffer.alloc(0), headers: {} }, { id: `${RUN}-r2-random`, value: randomBytes(512), headers: {} });
  await produce(kafka, TOPICS.studies, round2.map((s) => ({ key: s.id, value: s.value, headers: s.headers })));
  await findingsFor(round2.map((s) => s.id));
});

afterAll(async () => {
  const codes = await Promise.all([...services.values()].map((s) => s.stop()));
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((r) => prometheus?.once('exit', r));
    prometheus.kill('SIGTERM');
    await exited;
  }
  if (prometheusData) rmSync(prometheusData, { recursive: true, force: true });
  await admin.deleteTopics({ topics: Object.values(TOPICS).flatMap((t) => [t, `${t}.dlq`]) }).catch(() => undefined);
  await admin.disconnect();
  expect(codes).toEqual([...services.values()].map(() => 0));
});

// ── Prometheus ─────────────────────────────────────────────────────────────────────────────

describe('a real Prometheus scraping the pipeline', () => {
  it('scrapes all four services with the shipped scrape config and evaluates the shipped rules', async () => {
    const up = await promQuery('up{job="thorax"}');
    expect(up.map((s) => [s.metric['service'], s.value[1]]).sort()).toEqual(SERVICES.map((s) => [s, '1']).sort());
    const rules = await eventually('rules evaluated', 20_000, async () => {
      const res = (await (await fetch(`${PROMETHEUS}/api/v1/rules`)).json()) as {
        data: { groups: { name: string; rules: { name: string; health: string; lastError?: string; type: string }[] }[] };
      };
      const all = res.data.groups.flatMap((g) => g.rules);
      return all.length > 0 && all.every((r) => r.health !== 'unknown') ? res.data.groups : undefined;
    });
    expect(rules.map((g) => g.name).sort()).toEqual(['thorax.alerts', 'thorax.recording']);
    const unhealthy = rules.flatMap((g) => g.rules).filter((r) => r.health !== 'ok');
    expect(unhealthy).toEqual([]);
    const names = rules.flatMap((g) => g.rules.map((r) => r.name));
    expect(names).toEqual(expect.arrayContaining(['ThoraxNoFindingsWhileInputArrives', 'ThoraxPositiveRateDrift', 'thorax:findings_positive_ratio:avg7d']));
  });

  it('shows the expected increase of thorax_messages_total for the measured round', async () => {
    const by = 'sum by (service, topic, outcome)';
    const sel = `thorax_messages_total{topic=~"thorax-${RUN}[.].*"}`;
    const query = `${by} (${sel}) - (${by} (${sel} @ ${t0.toFixed(3)}) or ${by} (${sel}) * 0)`;
    const expected = [
      ['ingest', TOPICS.studies, 'dead_lettered', '2'],
      ['ingest', TOPICS.studies, 'ok', '4'],
      ['inference', TOPICS.tensors, 'ok', '4'],
      ['preprocess', TOPICS.images, 'ok', '4'],
      ['results', TOPICS.findings, 'ok', '6'],
    ].sort((a, b) => a.join().localeCompare(b.join()));
    const rows = (samples: PromSample[]) =>
      samples
        .map((s) => [s.metric['service'], s.metric['topic'], s.metric['outcome'], s.value[1]])
        .filter((r) => r[3] !== '0')
        .sort((a, b) => a.join().localeCompare(b.join()));
    const increase = await eventually('round 2 scraped', 30_000, async () => {
      const got = rows(await promQuery(query));
      return JSON.stringify(got) === JSON.stringify(expected) ? got : undefined;
    }).catch(async (error: Error) => {
      throw new Error(`${error.message}; last: ${JSON.stringify(rows(await promQuery(query)))}`);
    });
    expect(increase).toEqual(expected);
  });

  it('has a non-empty end-to-end latency histogram', async () => {
    const [count] = await promQuery('sum(thorax_end_to_end_latency_seconds_count{service="results"})');
    expect(Number(count?.value[1])).toBeGreaterThanOrEqual(round1.length + round2.length);
    const filled = await promQuery('count(thorax_end_to_end_latency_seconds_bucket{service="results"} > 0)');
    expect(Number(filled[0]?.value[1])).toBeGreaterThan(0);
    const [p99] = await promQuery('histogram_quantile(0.99, sum by (le) (thorax_end_to_end_latency_seconds_bucket{service="results"}))');
    const seconds = Number(p99?.value[1]);
    expect(Number.isFinite(seconds)).toBe(true);
    expect(seconds).toBeGreaterThan(0);
  });

  it('runs every dashboard query, and every metric it reads is exported by a live service', async () => {
    const dashboard = JSON.parse(readFileSync(path.join(REPO_ROOT, 'deploy', 'grafana', 'dashboards', 'thorax-overview.json'), 'utf8')) as {
      panels: { title: string; type: string; targets?: { expr: string }[] }[];
    };
    const exported = new Set<string>(['up']);
    for (const name of SERVICES) {
      for (const [, family, type] of (await scrape(name)).matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
        if (!family) continue;
        if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(`${family}${s}`);
        else exported.add(family);
      }
    }
    const rules = readFileSync(path.join(REPO_ROOT, 'deploy', 'prometheus', 'rules', 'thorax.rules.yml'), 'utf8');
    for (const [, record] of rules.matchAll(/^\s*- record:\s*(\S+)/gm)) if (record) exported.add(record);
    const targets = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
    expect(targets.length).toBeGreaterThan(20);
    const missing = targets.flatMap((t) => metricNamesIn(t.expr).filter((n) => !exported.has(n)).map((n) => `${t.panel}: ${n}`));
    expect(missing).toEqual([]);
    const failing: string[] = [];
    for (const t of targets) await promQuery(grafanaToPromQL(t.expr)).catch((e: Error) => failing.push(`${t.panel}: ${e.message}`));
    expect(failing).toEqual([]);
    const [throughput] = await promQuery(`sum(rate(thorax_messages_total{service="ingest"}[1m]))`);
    expect(Number(throughput?.value[1])).toBeGreaterThan(0);
  });
});

// ── /metrics of each service ───────────────────────────────────────────────────────────────

describe('each service /metrics', () => {
  beforeAll(async () => {
    // Lag gauges are refreshed every 10 s: wait until every stage reported its 3 partitions, and
    // reported them drained (everything sent was committed).
    await eventually('consumer lag reported, and zero, for every stage', 45_000, async () => {
      const lag = await promQuery(`count by (topic) (thorax_consumer_lag{topic=~"thorax-${RUN}[.].*"})`);
      const [max] = await promQuery(`max(thorax_consumer_lag{topic=~"thorax-${RUN}[.].*"})`);
      return lag.length === 4 && lag.every((s) => s.value[1] === '3') && max?.value[1] === '0' ? lag : undefined;
    });
    scrapes = Object.fromEntries(await Promise.all(SERVICES.map(async (n) => [n, await scrape(n)] as const))) as Record<ServiceName, string>;
  });

  it('passes promtool check metrics', () => {
    for (const name of SERVICES) {
      const result = spawnSync(process.env['PROMTOOL_BIN'] ?? 'promtool', ['check', 'metrics'], { input: scrapes[name], encoding: 'utf8' });
      expect(result.error).toBeUndefined();
      expect({ name, status: result.status, output: `${result.stdout}${result.stderr}` }).toEqual({ name, status: 0, output: '' });
    }
  });

  it('exports the DESIGN.md metrics, fed by the services that own them', async () => {
    const value = async (q: string) => Number((await promQuery(q))[0]?.value[1] ?? NaN);
    for (const name of SERVICES) {
      expect(await value(`sum(thorax_messages_total{service="${name}", topic="${TOPIC_OF[name]}", outcome="ok"})`)).toBeGreaterThanOrEqual(4);
      expect(await value(`count(thorax_consumer_lag{service="${name}", topic="${TOPIC_OF[name]}", group="${RUN}-${name}"})`)).toBe(3);
      expect(await value(`sum(process_cpu_seconds_total{service="${name}"})`)).toBeGreaterThan(0);
      expect(await value(`thorax_ready{service="${name}"}`)).toBe(1);
    }
    for (const [service, stage] of [['ingest', 'admit'], ['preprocess', 'decode'], ['results', 'persist']]) {
      expect(await value(`sum(thorax_stage_duration_seconds_count{service="${service}", stage="${stage}"})`)).toBeGreaterThanOrEqual(4);
    }
    const model = await promQuery('thorax_model_info{service="inference"} == 1');
    expect(model.map((s) => [s.metric['model'], s.metric['provider']])).toContainEqual(['thorax-tiny-cnn', 'cpu']);
    const version = model[0]?.metric['version'] ?? '';
    expect(await value(`sum(thorax_inference_batch_size_count{service="inference", model="thorax-tiny-cnn", version="${version}"})`)).toBeGreaterThan(0);
    expect(await value(`sum(thorax_inference_duration_seconds_count{service="inference", provider="cpu"})`)).toBeGreaterThan(0);
    const perLabel = await promQuery('sum by (label) (thorax_findings_total{service="inference"})');
    expect(perLabel).toHaveLength(14);
    expect(new Set(perLabel.map((s) => s.value[1])).size).toBe(1); // every image decides all 14 labels
    expect(Number(perLabel[0]?.value[1])).toBeGreaterThanOrEqual(6);
    expect(await value('sum(thorax_errors_total{service="ingest", stage="ingest", code="EMPTY_PAYLOAD"})')).toBe(1);
    expect(await value('sum(thorax_errors_total{service="ingest", stage="ingest", code="UNSUPPORTED_MEDIA_TYPE"})')).toBe(2);
    expect(await value('sum(thorax_errors_total{service="preprocess", stage="preprocess"})')).toBeGreaterThanOrEqual(1);
  });

  it('keeps label values bounded: no image id, patient, trace id or raw URL in any label', async () => {
    // A REST read by an id that looks like a SOP Instance UID: the route label is the pattern.
    expect((await fetch(`http://127.0.0.1:${PORTS.results}/v1/findings/${encodeURIComponent(DICOM_SOP_UID)}`)).status).toBe(200);
    const results = await scrape('results');
    expect(results).toMatch(/thorax_http_requests_total\{[^}]*route="\/v1\/findings\/:id"[^}]*status_code="200"/);
    const forbidden = [...round1, ...round2].map((s) => s.id).concat(Object.values(PATIENT), [TRACE_ID, `ACC-${RUN}`]);
    for (const name of SERVICES) {
      const text = name === 'results' ? results : scrapes[name];
      expect({ name, problems: idLikeLabelValues(text, forbidden) }).toEqual({ name, problems: [] });
      const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;
      expect(series).toBeLessThan(3000);
    }
  });

  // Known gap, marked failing: apps/results does not install grpcMetricsInterceptor yet. When it
  // does, this test starts passing, it.failing reports it, and it becomes a plain `it`.
  it.failing('counts results gRPC calls by method and code', async () => {
    const client = new ResultsServiceClient(`127.0.0.1:${PORTS.resultsGrpc}`, credentials.createInsecure());
    try {
      await new Promise((resolve) => client.getFindings({ id: `${RUN}-r2-ok-0`, modelVersion: '' }, resolve));
      await new Promise((resolve) => client.getFindings({ id: `${RUN}-never-sent`, modelVersion: '' }, resolve));
    } finally {
      client.close();
    }
    const text = await scrape('results');
    expect(text).toMatch(/thorax_grpc_server_handled_total\{[^}]*grpc_method="GetFindings"[^}]*grpc_code="OK"[^}]*\} 1/);
    expect(text).toMatch(/thorax_grpc_server_handled_total\{[^}]*grpc_method="GetFindings"[^}]*grpc_code="NOT_FOUND"[^}]*\} 1/);
  });
});

// ── health ─────────────────────────────────────────────────────────────────────────────────

describe('health endpoints', () => {
  it('answer /healthz and /readyz through terminus with the checks each service registers', async () => {
    const expectedReadiness: Record<ServiceName, string[]> = {
      ingest: ['kafka-producer', `consumer:${TOPICS.studies}`],
      preprocess: ['kafka-producer', `consumer:${TOPICS.images}`],
      inference: ['kafka-producer', `consumer:${TOPICS.tensors}`, 'model'],
      results: ['kafka-producer', `consumer:${TOPICS.findings}`, 'results-store'],
    };
    for (const name of SERVICES) {
      const live = await fetch(`http://127.0.0.1:${PORTS[name]}/healthz`);
      expect(live.status).toBe(200);
      expect(await live.json()).toMatchObject({ status: 'ok', details: { [`consumer:${TOPIC_OF[name]}`]: { status: 'up' } } });
      const ready = await fetch(`http://127.0.0.1:${PORTS[name]}/readyz`);
      expect(ready.status).toBe(200);
      const body = (await ready.json()) as { status: string; details: Record<string, { status: string }> };
      expect(body.status).toBe('ok');
      for (const check of expectedReadiness[name]) expect({ name, check, status: body.details[check]?.status }).toEqual({ name, check, status: 'up' });
    }
  });
});

// ── logs and traces ────────────────────────────────────────────────────────────────────────

describe('logs', () => {
  it('are JSON lines with service and version, and record lines carry topic, partition, offset, id and trace id', () => {
    for (const name of SERVICES) {
      const { entries } = parsedLog(name);
      for (const e of entries) expect({ service: e['service'], version: typeof e['version'] }).toEqual({ service: name, version: 'string' });
      const traced = entries.filter((e) => e['id'] === `${RUN}-png-traced`);
      expect({ name, lines: traced.length > 0 }).toEqual({ name, lines: true });
      for (const e of traced) {
        expect(e).toMatchObject({ topic: TOPIC_OF[name], partition: expect.any(Number), offset: expect.any(String), traceId: TRACE_ID });
      }
    }
  });

  it('never contain a patient name or id, from headers or from DICOM tags', () => {
    const needles = Object.values(PATIENT).flatMap((v) => [v, ...v.split('^')]);
    let lines = 0;
    for (const name of SERVICES) {
      const text = logLines(name);
      lines += text.length;
      // Not vacuous: the records carrying those identifiers were logged, by image id.
      expect({ name, logged: text.some((l) => l.includes(`${RUN}-png-untraced`)) }).toEqual({ name, logged: true });
      for (const needle of needles) {
        const hits = text.filter((l) => l.includes(needle));
        expect({ name, needle, hits }).toEqual({ name, needle, hits: [] });
      }
    }
    expect(lines).toBeGreaterThan(40);
  });

  it('carry the PACS trace from ingest to the findings event', () => {
    const record = findings1.find((r) => r.key === `${RUN}-png-traced`);
    expect(record?.headers['traceparent']?.split('-')[1]).toBe(TRACE_ID);
    const event: FindingsEvent = decodeFindingsEvent(record?.value ?? null);
    expect(event.status).toBe('ok');
  });

  // Known gap, marked failing: nothing calls ensureTraceparent on intake yet. When ingest (or
  // the record consumer) does, this starts passing, it.failing reports it: make it a plain `it`.
  it.failing('ingest starts a trace when the PACS sent none', () => {
    for (const id of [`${RUN}-png-untraced`, `${RUN}-junk`]) {
      const record = findings1.find((r) => r.key === id);
      expect(record?.headers['traceparent']).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    }
  });
});
