/**
 * The review page in a real browser: studies go through the whole pipeline (broker, the four
 * built services, the real model), then headless Debian Chromium, driven by playwright-core,
 * opens /review on results: the STAT study heads the worklist, the study view shows the wire
 * image, the heatmap overlay toggles, and a verdict submitted with the keyboard arrives on
 * thorax.feedback.v1. Any console error, page error or failed request fails the test. Before
 * that, over HTTP: inference stored the wire image and every label's activation maps (no heatmap
 * PNG), results renders a heatmap of a positive and of a negative label from them on request
 * (RGBA, the wire image's size, peaking in the map's strongest cell; ETag and 304), and a result
 * of an older producer with stored heatmap PNGs is still served.
 * Screenshots: .data/test-artifacts/review/ (printed).
 */
import { decodeActivationMaps, decodeFeedbackEvent, decodeFindingsEvent, type FindingsEvent } from '@thorax/contracts';
import {
  collect,
  collectOncePerId,
  produce,
  REPO_ROOT,
  type RunningService,
  servicePorts,
  startBuiltService,
  startServices,
  syntheticChestXray,
  testBrokers,
  testKafka,
  waitForService,
} from '@thorax/testing';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import sharp from 'sharp';

jest.setTimeout(300_000);

const say = (line: string) => process.stdout.write(`[review e2e] ${line}\n`);

const RUN = `review-${Date.now().toString(36)}`;
// Port block 28000-28999: results, ingest, preprocess, inference on base..base+3, gRPC base+10;
// below the kernel's ephemeral range (32768-60999), where an outgoing connection can hold a port
// (results' gRPC port 44190 was once taken so).
const PORTS = servicePorts(Number(process.env['THORAX_REVIEW_E2E_PORT_BASE'] ?? 28180));
const CHROMIUM = process.env['THORAX_CHROMIUM'] ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, '.data', 'test-artifacts', 'review');
const kafka = testKafka('thorax-review-e2e');
const objectsDir = mkdtempSync(path.join(tmpdir(), 'thorax-review-objects-'));
const services: RunningService[] = [];
let browser: Browser;
let page: Page;
const problems: string[] = [];
const base = `http://127.0.0.1:${PORTS.results}`;

const STAT_STUDY = `1.2.826.0.1.3680043.8.498.${Date.now() % 1_000_000}.1`;
const ROUTINE_STUDY = `1.2.826.0.1.3680043.8.498.${Date.now() % 1_000_000}.2`;
const ids = { stat: `${RUN}-stat`, routine: `${RUN}-routine` };
let statEvent: FindingsEvent;
/** A result as an older producer wrote it: a stored heatmap PNG per positive label. */
const legacy = { id: `${RUN}-legacy`, label: 'Cardiomegaly' };
let legacyHeatmap: Buffer;

/**
 * The heatmap the overlay shows: the map inference stored for the STAT image's first positive
 * label. Only if the model finds nothing positive on this synthetic image (a retrained model
 * might) does the test add a result of its own, as a producer would, with a map written into the
 * same object store, so the overlay is exercised either way.
 */
let overlay: { id: string; label: string; fromPipeline: boolean };

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const logDir = path.join(REPO_ROOT, '.data', 'test-logs', RUN);
  const env = {
    KAFKA_BROKERS: testBrokers().join(','),
    LOG_LEVEL: 'info',
    MODEL_DIR: path.join(REPO_ROOT, 'models', 'thorax-tiny-cnn'),
    RESULTS_DATA_DIR: 'memory://',
    INFERENCE_PROVIDERS: 'cpu',
    OBJECT_STORE_URL: pathToFileURL(objectsDir).href,
    RESULTS_FEEDBACK_RELAY_MS: '1000',
  };
  services.push(...(await startServices({ ports: PORTS, env, logDir, names: ['results', 'inference', 'preprocess'] })).values());
  // Ingest's own gRPC port inside this test's block (its default, 50052, may be taken).
  const ingest = startBuiltService('ingest', { ...env, HTTP_PORT: String(PORTS.ingest), INGEST_GRPC_PORT: String(PORTS.resultsGrpc + 1) }, logDir);
  services.push(ingest);
  await waitForService(ingest, `http://127.0.0.1:${PORTS.ingest}/readyz`, 120_000);

  const [statPng, routinePng] = await Promise.all([
    syntheticChestXray({ width: 640, height: 600, seed: 41 }),
    syntheticChestXray({ width: 600, height: 640, seed: 42 }),
  ]);
  await produce(kafka, 'thorax.studies.v1', [
    { key: ids.routine, value: routinePng, headers: { 'content-type': 'image/png', 'thorax-study-uid': ROUTINE_STUDY, 'thorax-accession': 'ACC-R-1', 'thorax-patient-id': 'PAT-R-1' } },
    { key: ids.stat, value: statPng, headers: { 'content-type': 'image/png', 'thorax-study-uid': STAT_STUDY, 'thorax-accession': 'ACC-S-1', 'thorax-patient-id': 'PAT-S-1', 'thorax-priority': 'stat' } },
  ]);
  const records = await collectOncePerId(kafka, 'thorax.findings.v1', new Set(Object.values(ids)), 150_000);
  const events = new Map([...records].map(([key, r]) => [key, decodeFindingsEvent(r.value)]));
  statEvent = events.get(ids.stat) as FindingsEvent;
  expect(statEvent).toMatchObject({ status: 'ok', priority: 'stat' });
  expect(events.get(ids.routine)).toMatchObject({ status: 'ok', priority: 'routine' });

  // Inference keeps the wire image and every label's activation maps of every ok result, no heatmap PNG.
  for (const event of [statEvent, events.get(ids.routine) as FindingsEvent]) {
    expect(event.wireImage).toMatchObject({ width: 256, height: 256 });
    expect(event.activationMaps).toMatchObject({ format: 'thorax.cam.v1', labels: event.findings.map((f) => f.label), height: 7, width: 7 });
    expect(event).not.toHaveProperty('heatmaps');
    const folder = path.dirname(fileURLToPath(event.activationMaps?.uri ?? ''));
    expect(readdirSync(folder).sort()).toEqual(['cam.bin', 'wire.png']);
  }
  legacyHeatmap = await publishResultWithHeatmap(legacy.id, legacy.label);
  const positive = statEvent.positives[0];
  if (positive) {
    overlay = { id: ids.stat, label: positive, fromPipeline: true };
  } else {
    overlay = { id: legacy.id, label: legacy.label, fromPipeline: false };
  }
  say(`overlay of ${overlay.label} on ${overlay.fromPipeline ? 'the pipeline result' : 'a result published by the test (nothing positive on the pipeline result)'}`);
  await waitFor(async () => {
    const res = await fetch(`${base}/v1/review/results/${encodeURIComponent(legacy.id)}`);
    return res.ok;
  }, 30_000);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 }, deviceScaleFactor: 1 });
  page = await context.newPage();
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console ${msg.type()}: ${msg.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText ?? ''}`));
  page.on('response', (res) => {
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.request().method()} ${res.url()}`);
  });
});

afterAll(async () => {
  await browser?.close();
  const codes = await Promise.all(services.map((s) => s.stop()));
  rmSync(objectsDir, { recursive: true, force: true });
  expect(codes).toEqual(services.map(() => 0));
});

afterEach(() => {
  expect(problems.splice(0)).toEqual([]);
});

/**
 * Browser-side code runs as functions (the page's CSP forbids evaluating strings); the tests
 * compile without the DOM library, so the little they touch is typed here.
 */
interface BrowserElement {
  hidden: boolean;
  complete: boolean;
  naturalWidth: number;
  textContent: string | null;
  style: { opacity: string };
}
/** Waits until an img element is shown and decoded. */
const loaded = (id: string) =>
  page.waitForFunction((elementId) => {
    const img = (globalThis as unknown as { document: { getElementById(id: string): BrowserElement | null } }).document.getElementById(elementId);
    return !!img && !img.hidden && img.complete && img.naturalWidth > 0;
  }, id);

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * A findings event as an older producer wrote it, with a wire image and a stored heatmap PNG, the
 * objects written where the store keeps them; returns the heatmap PNG.
 */
async function publishResultWithHeatmap(id: string, label: string): Promise<Buffer> {
  const root = fileURLToPath(pathToFileURL(objectsDir).href);
  const put = (key: string, bytes: Buffer) => {
    const file = path.join(root, key);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, bytes);
    return pathToFileURL(file).href;
  };
  const wire = await sharp(await syntheticChestXray({ width: 256, height: 256, seed: 43 })).greyscale().png().toBuffer();
  // A red-to-yellow blob over the heart, transparent elsewhere.
  const rgba = Buffer.alloc(256 * 256 * 4);
  for (let y = 0; y < 256; y += 1) {
    for (let x = 0; x < 256; x += 1) {
      const a = Math.exp(-((x - 150) ** 2 + (y - 160) ** 2) / (2 * 28 ** 2));
      rgba.set([255, Math.round(255 * a), 0, Math.round(255 * a)], (y * 256 + x) * 4);
    }
  }
  const heat = await sharp(rgba, { raw: { width: 256, height: 256, channels: 4 } }).png().toBuffer();
  const event: FindingsEvent = {
    ...statEvent,
    id,
    study: { ...statEvent.study, viewPosition: 'PA' },
    priority: 'stat',
    findings: statEvent.findings.map((f) => (f.label === label ? { ...f, probability: Math.max(f.threshold, 0.9), positive: true } : f)),
    wireImage: { uri: put(`review/${id}/wire.png`, wire), width: 256, height: 256 },
    heatmaps: [{ label, uri: put(`review/${id}/heatmap-${label}.png`, heat) }],
  };
  delete event.activationMaps;
  event.positives = event.findings.filter((f) => f.positive).map((f) => f.label);
  await produce(kafka, 'thorax.findings.v1', [{ key: id, value: Buffer.from(JSON.stringify(event)) }]);
  return heat;
}

/** The pixels of a heatmap PNG, checked to be RGBA the size of the wire image. */
async function heatmapPixels(res: Response): Promise<Buffer> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('image/png');
  const { data, info } = await sharp(Buffer.from(await res.arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([256, 256, 4]);
  return data;
}

describe('heatmaps rendered by results from the stored maps', () => {
  it("renders a positive and a negative label's heatmap on request, peaking in the map's strongest cell", async () => {
    const event = statEvent;
    const maps = decodeActivationMaps(readFileSync(fileURLToPath(event.activationMaps?.uri ?? '')));
    expect(maps.labels).toEqual(event.findings.map((f) => f.label));
    expect(maps.image).toEqual({ width: 256, height: 256 });
    const negative = event.findings.find((f) => !f.positive)?.label as string;
    const labels = [...event.positives.slice(0, 1), negative];
    const tags = new Set<string>();
    for (const label of labels) {
      const res = await fetch(`${base}/v1/findings/${encodeURIComponent(event.id)}/heatmaps/${encodeURIComponent(label)}`);
      const etag = res.headers.get('etag') ?? '';
      expect(etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
      tags.add(etag);
      const pixels = await heatmapPixels(res);
      // Transparent outside the region the maps cover; opaque at 200/255 where the map is strongest.
      const { top, left, height, width } = maps.region;
      let peak = { x: -1, y: -1, alpha: -1 };
      for (let y = 0; y < 256; y += 1) {
        for (let x = 0; x < 256; x += 1) {
          const alpha = pixels[(y * 256 + x) * 4 + 3] as number;
          const inside = y >= top && y < top + height && x >= left && x < left + width;
          if (!inside) expect(alpha).toBe(0);
          if (alpha > peak.alpha) peak = { x, y, alpha };
        }
      }
      expect(peak.alpha).toBe(200);
      const k = maps.labels.indexOf(label);
      const cells = Array.from(maps.maps.subarray(k * 49, (k + 1) * 49));
      const [min, max] = [Math.min(...cells), Math.max(...cells)];
      const cell = Math.floor((peak.y - top) / (height / maps.height)) * maps.width + Math.floor((peak.x - left) / (width / maps.width));
      // The opaque peak lies in the block of the strongest cell (or of one within 5 % of it: a near tie).
      expect({ label, value: cells[cell] as number >= max - 0.05 * (max - min) }).toEqual({ label, value: true });
      // The browser's revalidation: 304, nothing rendered again.
      const again = await fetch(`${base}/v1/findings/${encodeURIComponent(event.id)}/heatmaps/${encodeURIComponent(label)}`, { headers: { 'if-none-match': etag } });
      expect(again.status).toBe(304);
    }
    expect(tags.size).toBe(labels.length);
    const missing = await fetch(`${base}/v1/findings/${encodeURIComponent(event.id)}/heatmaps/No_Finding`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/thorax_review_heatmap_render_seconds_count\{[^}]*\} [1-9]/);
  });

  it('still serves the stored heatmap PNG of a result of an older producer', async () => {
    const view = (await (await fetch(`${base}/v1/review/results/${encodeURIComponent(legacy.id)}`)).json()) as { heatmaps: string[]; mapLabels: string[] };
    expect(view).toMatchObject({ heatmaps: [legacy.label], mapLabels: [legacy.label] });
    const res = await fetch(`${base}/v1/findings/${encodeURIComponent(legacy.id)}/heatmaps/${legacy.label}`);
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(legacyHeatmap)).toBe(true);
  });
});

describe('review page in headless Chromium', () => {
  it('lists the studies, STAT first, without patient identifiers', async () => {
    await page.goto(`${base}/review`);
    await page.waitForSelector('#studies li');
    const rows = await page.$$eval('#studies li', (lis) => lis.map((li) => ({ badge: li.querySelector('.badge')?.textContent, text: li.textContent ?? '' })));
    expect(rows.length).toBeGreaterThanOrEqual(2);
    expect(rows[0]?.badge).toBe('STAT');
    const statIndex = rows.findIndex((r) => r.badge !== 'STAT');
    expect(rows.slice(0, statIndex === -1 ? rows.length : statIndex).every((r) => r.badge === 'STAT')).toBe(true);
    const html = await page.content();
    expect(html).not.toMatch(/PAT-S-1|PAT-R-1|ACC-S-1|ACC-R-1/);
    expect(await page.textContent('#banner')).toMatch(/AI-asserted, preliminary/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'worklist.png') });
    say(`screenshot ${path.join(ARTIFACTS, 'worklist.png')}`);
  });

  it('opens the study view with the image, the bar chart and the model', async () => {
    const target = overlay.id;
    const refs = (await (await fetch(`${base}/v1/review/worklist?limit=100`)).json()) as { studies: { ref: string; images: { id: string }[] }[] };
    const study = refs.studies.find((s) => s.images.some((i) => i.id === target));
    expect(study).toBeDefined();
    await page.click(`#studies li[data-ref="${study?.ref}"]`);
    const imageIndex = study?.images.findIndex((i) => i.id === target) ?? 0;
    if (imageIndex > 0) await page.click(`#image-tabs button[data-index="${imageIndex}"]`);
    await page.waitForSelector('#wire:not([hidden])');
    // The study's first image may load before the tab click swaps in the target's (src replaced,
    // naturalWidth 0 again while it loads): wait for a loaded image of the expected width.
    const width = overlay.fromPipeline ? statEvent.wireImage?.width : 256;
    const shown = await page
      .waitForFunction(
        (expected) => {
          const img = (globalThis as unknown as { document: { getElementById(id: string): BrowserElement | null } }).document.getElementById('wire');
          return !!img && !img.hidden && img.complete && img.naturalWidth === expected ? img.naturalWidth : false;
        },
        width,
        { timeout: 10_000 },
      )
      .then((handle) => handle.jsonValue())
      .catch(() => page.$eval('#wire', (img) => (img as unknown as BrowserElement).naturalWidth));
    expect(shown).toBe(width);
    expect(await page.$$eval('#labels li', (lis) => lis.length)).toBe(14);
    expect(await page.$$eval('#labels li .tick', (ticks) => ticks.length)).toBe(14);
    const model = await page.textContent('#model');
    expect(model).toMatch(/thorax-tiny-cnn/);
    expect(model).toMatch(/cpu/);
  });

  it('toggles the heatmap overlay with the keyboard and sets its opacity', async () => {
    const row = await page.$(`#labels li[data-label="${overlay.label}"]`);
    expect(row).not.toBeNull();
    await row?.click();
    await page.keyboard.press('h');
    await loaded('overlay');
    expect(await page.getAttribute('body', 'data-overlay')).toBe(overlay.label);
    await page.keyboard.press(']');
    await page.keyboard.press(']');
    expect(await page.$eval('#overlay', (img) => (img as unknown as BrowserElement).style.opacity)).toBe('0.65');
    expect(await page.inputValue('#opacity')).toBe('65');
    await page.screenshot({ path: path.join(ARTIFACTS, 'study.png') });
    say(`screenshot ${path.join(ARTIFACTS, 'study.png')}`);
    await page.keyboard.press('h');
    await page.waitForSelector('#overlay', { state: 'hidden' });
    expect(await page.getAttribute('body', 'data-overlay')).toBe('');
    await page.keyboard.press('h');
    await loaded('overlay');
  });

  it('submits a verdict with a comment, stored and published on thorax.feedback.v1', async () => {
    await page.keyboard.press('c');
    await page.keyboard.type('Not convinced: overlapping rib and breast shadows.');
    await page.keyboard.press('Escape');
    await page.keyboard.press('d');
    await page.waitForSelector('#feedback-status:has-text("Disagreed")');
    expect(await page.getAttribute('#disagree', 'aria-pressed')).toBe('true');
    const records = await collect(
      kafka,
      'thorax.feedback.v1',
      (rs) => rs.some((r) => r.key === overlay.id),
      30_000,
      { quietMs: 500 },
    );
    const mine = records.filter((r) => r.key === overlay.id).map((r) => decodeFeedbackEvent(r.value));
    expect(mine).toHaveLength(1);
    expect(mine[0]).toMatchObject({
      id: overlay.id,
      label: overlay.label,
      verdict: 'disagree',
      comment: 'Not convinced: overlapping rib and breast shadows.',
      reviewer: 'anonymous',
      revision: 1,
      model: { name: 'thorax-tiny-cnn' },
    });
    expect(JSON.stringify(mine[0])).not.toMatch(/PAT-|ACC-/);
    // The worklist marks the image reviewed, and the stored verdict is what the API returns.
    const stored = (await (await fetch(`${base}/v1/findings/${encodeURIComponent(overlay.id)}/feedback`)).json()) as { feedback: unknown[] };
    expect(stored.feedback).toEqual([mine[0]]);
    if (existsSync(path.join(ARTIFACTS, 'study.png'))) await page.screenshot({ path: path.join(ARTIFACTS, 'study-feedback.png') });
  });

  it("overlays a label the model did not call, from the selector's other labels", async () => {
    if (!overlay.fromPipeline) {
      say('no pipeline result with maps on the page: skipped the other-labels overlay');
      return;
    }
    const negative = statEvent.findings.find((f) => !f.positive)?.label as string;
    const options = await page.$$eval('#overlay-label optgroup option', (os) => os.map((o) => o.getAttribute('value')));
    expect(options).toContain(negative);
    expect(options).not.toContain(overlay.label);
    await page.selectOption('#overlay-label', negative);
    await page.waitForFunction((label) => (globalThis as unknown as { document: { body: { dataset: Record<string, string> } } }).document.body.dataset['overlay'] === label, negative);
    await loaded('overlay');
    expect(await page.getAttribute('#labels li[aria-selected="true"]', 'data-label')).toBe(negative);
  });
});
