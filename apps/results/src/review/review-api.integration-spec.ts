import { type DynamicModule, type INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { type TokenVerifier, tokenVerifierFromConfig } from '@thorax/auth';
import { loadConfig } from '@thorax/config';
import {
  ACTIVATION_MAPS_FORMAT,
  type ActivationMaps,
  CHESTXRAY14_LABELS,
  decodeFeedbackEvent,
  encodeActivationMaps,
  type FeedbackEvent,
  type FindingsEvent,
} from '@thorax/contracts';
import { decodePngRaw, heatmapRgba } from '@thorax/imaging';
import { type OutgoingRecord, PUBLISHER, type Publisher } from '@thorax/kafka';
import { FileObjectStore, type ObjectStore } from '@thorax/object-store';
import { createLogger, ObservabilityModule, ThoraxMetrics } from '@thorax/observability';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import { resultsConfigSchema } from '../config';
import { FeedbackRelay } from '../feedback/feedback-relay';
import { FEEDBACK_TOPIC_OPTIONS, FeedbackTopicPublisher } from '../feedback/feedback-topic.publisher';
import { FeedbackController } from '../feedback/feedback.controller';
import { FeedbackService } from '../feedback/feedback.service';
import { FindingsReader, READER_OPTIONS } from '../findings/findings-reader.service';
import { FindingsController } from '../findings/findings.controller';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import { FEEDBACK_STORE, FINDINGS_FEED, FINDINGS_QUERIES, type ResultsStore, REVIEW_QUERIES } from '../store/results-store.port';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import { okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { HeatmapRenderer } from './heatmap-renderer';
import { REVIEW_OBJECT_STORE, ReviewObjects } from './review-objects';
import { ReviewImagesController } from './review-images.controller';
import { ReviewPageController } from './review-page.controller';
import { REVIEW_OPTIONS, ReviewService } from './review.service';
import { ReviewController } from './review.controller';

jest.setTimeout(60_000);

/**
 * The review HTTP surface in-process over a real store (PGlite) and a real file object store:
 * image streaming and caching, 404s (missing, gone, outside review/), feedback revisions and the
 * outbox (publish failure, relay), identifiers, and bearer auth. The Kafka side is the publisher
 * port, recorded here; the e2e test (test/e2e/review.e2e-spec.ts) runs it against a broker.
 */
const STUDY = '1.2.826.0.1.3680043.8.498.501';
const ISSUER = 'https://idp.hospital.example/realms/radiology';
const dir = mkdtempSync(path.join(tmpdir(), 'thorax-review-api-'));
const objects: ObjectStore = new FileObjectStore(path.join(dir, 'objects'));
const log = createLogger({ service: 'results-test', version: '0', level: 'silent' });

/** The publisher port as Kafka would be: it acknowledges, or refuses while `down`. */
class RecordingPublisher implements Publisher {
  readonly records: OutgoingRecord[] = [];
  down = false;
  async publish(records: OutgoingRecord[]): Promise<void> {
    if (this.down) throw new Error('broker unavailable');
    this.records.push(...records);
  }
  events(): FeedbackEvent[] {
    return this.records.map((r) => decodeFeedbackEvent(r.value));
  }
}

@Module({})
class ReviewTestModule {
  static forRoot(store: ResultsStore, publisher: Publisher, auth: TokenVerifier | null, showPatient: boolean): DynamicModule {
    return {
      module: ReviewTestModule,
      imports: [ObservabilityModule.forRoot({ service: 'results-test', version: 'test', logLevel: 'silent', logger: log, auth })],
      controllers: [ReviewImagesController, FeedbackController, FindingsController, ReviewController, ReviewPageController],
      providers: [
        { provide: FINDINGS_QUERIES, useValue: store.findings },
        { provide: FINDINGS_FEED, useValue: store.feed },
        { provide: FEEDBACK_STORE, useValue: store.feedback },
        { provide: REVIEW_QUERIES, useValue: store.review },
        { provide: READER_OPTIONS, useValue: { watchPollMs: 60_000 } },
        { provide: REVIEW_OPTIONS, useValue: { showPatient, worklistSize: 200 } },
        { provide: REVIEW_OBJECT_STORE, useValue: objects },
        { provide: FEEDBACK_TOPIC_OPTIONS, useValue: { topic: 'thorax.feedback.v1' } },
        { provide: PUBLISHER, useValue: publisher },
        FindingsReader,
        ReviewObjects,
        HeatmapRenderer,
        ReviewService,
        FeedbackTopicPublisher,
        FeedbackService,
      ],
    };
  }
}

async function start(options: { auth?: TokenVerifier | null; showPatient?: boolean; publisher?: RecordingPublisher } = {}) {
  const publisher = options.publisher ?? new RecordingPublisher();
  const app = await NestFactory.create(ReviewTestModule.forRoot(repo, publisher, options.auth ?? null, options.showPatient ?? false), { logger: false, bodyParser: false });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  apps.push(app);
  return { url: `http://127.0.0.1:${port}`, publisher, app };
}

let db: SqlClient;
let repo: ResultsStore;
const apps: INestApplication[] = [];
let wirePng: Buffer;
let withImages: FindingsEvent;
let withMaps: FindingsEvent;
/** img-3's maps: a different blob per label, so each label's heatmap has its own peak. */
const cam: ActivationMaps = (() => {
  const labels = [...CHESTXRAY14_LABELS];
  const maps = new Float32Array(labels.length * 49);
  labels.forEach((_, k) => {
    for (let i = 0; i < 49; i += 1) maps[k * 49 + i] = -Math.hypot((i % 7) - (k % 7), Math.floor(i / 7) - ((k * 3) % 7)) + k * 0.01;
  });
  return { labels, height: 7, width: 7, image: { width: 256, height: 256 }, region: { top: 16, left: 16, height: 224, width: 224 }, units: 'logit', bias: labels.map(() => -2), maps };
})();

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = sqlResultsStore(db);
  wirePng = flatPng(256, 256, [90]);
  const heat = flatPng(256, 256, [255, 0, 0, 128]);
  const wire = await objects.put('review/img-1/wire.png', wirePng, { contentType: 'image/png' });
  const map = await objects.put('review/img-1/cardiomegaly.png', heat, { contentType: 'image/png' });
  const claimChecked = await objects.put('studies/img-1.dcm', Buffer.from('DICM raw input'));
  const base = okEvent('img-1', { study: { studyUid: STUDY, accession: 'ACC-501', patientId: 'MRN-501', viewPosition: 'PA' }, positives: ['Cardiomegaly'] });
  withImages = { ...base, priority: 'stat', wireImage: { uri: wire.uri, width: 256, height: 256 }, heatmaps: [{ label: 'Cardiomegaly', uri: map.uri }] };
  await storeOne(repo, withImages);
  // A result naming objects it must not get: a claim-checked input, and a file outside the store.
  await storeOne(repo, { ...okEvent('img-evil', { study: { studyUid: '9.9' } }), wireImage: { uri: claimChecked.uri, width: 1, height: 1 }, heatmaps: [{ label: 'Cardiomegaly', uri: 'file:///etc/passwd' }] });
  // A result from an older producer, without review images.
  await storeOne(repo, okEvent('img-old', { study: { studyUid: '1.2.3.old', viewPosition: 'PA' }, positives: [] }));
  // A result of the current producer: the wire image and every label's activation maps.
  const wire3 = await objects.put('review/img-3/2026.11.30-1/wire.png', wirePng, { contentType: 'image/png' });
  const maps3 = await objects.put('review/img-3/2026.11.30-1/cam.bin', encodeActivationMaps(cam));
  withMaps = {
    ...okEvent('img-3', { study: { studyUid: '1.2.826.0.1.3680043.8.498.503', viewPosition: 'AP' }, positives: ['Effusion', 'Mass'] }),
    wireImage: { uri: wire3.uri, width: 256, height: 256 },
    activationMaps: { uri: maps3.uri, format: ACTIVATION_MAPS_FORMAT, labels: [...cam.labels], height: 7, width: 7, region: { ...cam.region } },
  };
  await storeOne(repo, withMaps);
});

afterAll(async () => {
  await Promise.all(apps.map((a) => a.close()));
  await db?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A PNG of one flat colour (grey or RGBA), written by hand: this app's tests do not use an image library. */
function flatPng(width: number, height: number, pixel: number[]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, pixel.length === 1 ? 0 : 6, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => pixel).flat())]);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

describe('review images', () => {
  it('streams the wire image and heatmap as PNG with a strong ETag, and answers 304 to it', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/v1/findings/img-1/image`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('cache-control')).toBe('private, max-age=86400');
    expect(Buffer.from(await res.arrayBuffer()).equals(wirePng)).toBe(true);
    const etag = res.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
    const again = await fetch(`${url}/v1/findings/img-1/image`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const heat = await fetch(`${url}/v1/findings/img-1/heatmaps/Cardiomegaly`);
    expect(heat.status).toBe(200);
    const heatBytes = Buffer.from(await heat.arrayBuffer());
    expect(heatBytes.subarray(1, 4).toString('ascii')).toBe('PNG');
    expect([heatBytes.readUInt32BE(16), heatBytes.readUInt32BE(20), heatBytes[25]]).toEqual([256, 256, 6]);
    expect(heat.headers.get('etag')).not.toBe(etag);
  });

  it('answers 404 with the coded body for a missing result, image, label, gone object, or one outside review/', async () => {
    const { url } = await start();
    const cases = ['/v1/findings/nope/image', '/v1/findings/img-old/image', '/v1/findings/img-1/heatmaps/Mass', '/v1/findings/img-evil/image', '/v1/findings/img-evil/heatmaps/Cardiomegaly'];
    for (const c of cases) {
      const res = await fetch(url + c);
      expect({ c, status: res.status }).toEqual({ c, status: 404 });
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    }
    await objects.put('review/img-2/wire.png', wirePng);
    const gone = { ...okEvent('img-2'), wireImage: { uri: objects.location + '/review/img-2/wire.png', width: 256, height: 256 } };
    await storeOne(repo, gone);
    expect((await fetch(`${url}/v1/findings/img-2/image`)).status).toBe(200);
    await objects.delete(gone.wireImage.uri);
    expect((await fetch(`${url}/v1/findings/img-2/image`)).status).toBe(404);
  });
});

describe('heatmaps rendered from activation maps', () => {
  const rendered = async (res: Response) => {
    const png = await decodePngRaw(Buffer.from(await res.arrayBuffer()));
    expect([png.width, png.height, png.channels]).toEqual([256, 256, 4]);
    return png.data;
  };
  const expected = (label: string) => Buffer.from(heatmapRgba(cam.maps, cam.labels.indexOf(label), cam, 256, 256));
  const count = async (app: INestApplication, source: string) => {
    const text = await app.get(ThoraxMetrics).registry.getSingleMetricAsString('thorax_review_heatmaps_total');
    return Number(new RegExp(`source="${source}"[^}]*} (\\d+)`).exec(text)?.[1] ?? 0);
  };

  it('renders any label of the model, positive or not, exactly as heatmapRgba of the stored maps', async () => {
    const { url } = await start();
    for (const label of ['Effusion', 'Mass', 'Hernia', 'Pleural_Thickening']) {
      const res = await fetch(`${url}/v1/findings/img-3/heatmaps/${label}`);
      expect({ label, status: res.status, type: res.headers.get('content-type') }).toEqual({ label, status: 200, type: 'image/png' });
      expect(res.headers.get('cache-control')).toBe('private, max-age=86400');
      expect(Number(res.headers.get('content-length'))).toBeGreaterThan(1000);
      const pixels = await rendered(res);
      expect(pixels.equals(expected(label))).toBe(true);
    }
    // Labels differ: their peaks lie in different cells.
    expect(expected('Effusion').equals(expected('Mass'))).toBe(false);
    // Outside the 224² region the overlay is transparent; the peak is opaque at 200/255.
    const mass = expected('Mass');
    expect(mass[(5 * 256 + 5) * 4 + 3]).toBe(0);
    expect(Math.max(...mass.filter((_, i) => i % 4 === 3))).toBe(200);
  });

  it('tags each label with its own strong ETag, answers 304 to it, and serves repeats from memory', async () => {
    const { url, app } = await start();
    const first = await fetch(`${url}/v1/findings/img-3/heatmaps/Effusion`);
    const etag = first.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{32}"$/);
    await first.arrayBuffer();
    const other = await fetch(`${url}/v1/findings/img-3/heatmaps/Mass`);
    expect(other.headers.get('etag')).not.toBe(etag);
    await other.arrayBuffer();
    // The same tag from another process: it depends on the object, the label and the rendering only.
    const again = await start();
    const fresh = await fetch(`${again.url}/v1/findings/img-3/heatmaps/Effusion`);
    expect(fresh.headers.get('etag')).toBe(etag);
    await fresh.arrayBuffer();

    const before = { rendered: await count(app, 'rendered'), cache: await count(app, 'cache') };
    const notModified = await fetch(`${url}/v1/findings/img-3/heatmaps/Effusion`, { headers: { 'if-none-match': `W/"x", ${etag}` } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.get('etag')).toBe(etag);
    expect(await notModified.text()).toBe('');
    const repeat = await fetch(`${url}/v1/findings/img-3/heatmaps/Effusion`);
    expect((await rendered(repeat)).equals(expected('Effusion'))).toBe(true);
    expect({ rendered: await count(app, 'rendered'), cache: await count(app, 'cache') }).toEqual({ rendered: before.rendered, cache: before.cache + 1 });
    const text = await app.get(ThoraxMetrics).registry.getSingleMetricAsString('thorax_review_heatmap_render_seconds');
    expect(text).toMatch(/thorax_review_heatmap_render_seconds_count\{[^}]*} 2/);
  });

  it('lists every label in the result view and the maps in the stored event', async () => {
    const { url } = await start();
    const view = (await (await fetch(`${url}/v1/review/results/img-3`)).json()) as Record<string, unknown>;
    expect(view).toMatchObject({ heatmaps: ['Effusion', 'Mass'], mapLabels: [...CHESTXRAY14_LABELS], wireImage: { width: 256, height: 256 } });
    const old = (await (await fetch(`${url}/v1/review/results/img-1`)).json()) as Record<string, unknown>;
    expect(old).toMatchObject({ heatmaps: ['Cardiomegaly'], mapLabels: ['Cardiomegaly'] });
    const event = (await (await fetch(`${url}/v1/findings/img-3`)).json()) as FindingsEvent;
    expect(event.activationMaps).toEqual(withMaps.activationMaps);
    expect(event).not.toHaveProperty('heatmaps');
  });

  it('answers 404 for a label without a map or maps outside review/, and 500 without caching for unreadable maps', async () => {
    const { url, app } = await start();
    for (const label of ['Pneumonia%20', 'No_Finding', 'mass']) {
      const res = await fetch(`${url}/v1/findings/img-3/heatmaps/${label}`);
      expect({ label, status: res.status }).toEqual({ label, status: 404 });
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
    }
    const outside = await objects.put('studies/img-4.bin', encodeActivationMaps(cam));
    await storeOne(repo, { ...okEvent('img-4'), wireImage: withMaps.wireImage, activationMaps: { ...(withMaps.activationMaps as NonNullable<FindingsEvent['activationMaps']>), uri: outside.uri } });
    expect((await fetch(`${url}/v1/findings/img-4/heatmaps/Mass`)).status).toBe(404);

    const damaged = await objects.put('review/img-5/v/cam.bin', Buffer.from('TXCM not really maps'));
    await storeOne(repo, { ...okEvent('img-5'), wireImage: withMaps.wireImage, activationMaps: { ...(withMaps.activationMaps as NonNullable<FindingsEvent['activationMaps']>), uri: damaged.uri } });
    const res = await fetch(`${url}/v1/findings/img-5/heatmaps/Mass`);
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INTERNAL');
    // No entity tag of ours (Express may add its weak one to the JSON body) and no day-long caching.
    expect(res.headers.get('etag') ?? '').not.toMatch(/^"[A-Za-z0-9_-]{32}"$/);
    expect(res.headers.get('cache-control') ?? '').not.toMatch(/max-age=86400/);
    const failures = await app.get(ThoraxMetrics).registry.getSingleMetricAsString('thorax_review_heatmap_failures_total');
    const failed = (reason: string) => Number(new RegExp(`reason="${reason}"[^}]*} (\\d+)`).exec(failures)?.[1]);
    // img-4's maps lie outside review/ (answered as missing); img-5's do not decode.
    expect([failed('missing'), failed('unreadable'), failed('store_unavailable')]).toEqual([1, 1, 0]);
  });
});

describe('review worklist and result view', () => {
  it('puts the STAT study first and shows no identifiers unless configured', async () => {
    const { url } = await start();
    const body = (await (await fetch(`${url}/v1/review/worklist`)).json()) as { studies: { priority: string; images: { id: string }[] }[] };
    expect(body.studies[0]).toMatchObject({ priority: 'stat', images: [{ id: 'img-1' }] });
    expect(JSON.stringify(body)).not.toMatch(/MRN-501|ACC-501|1\.2\.826/);
    const view = (await (await fetch(`${url}/v1/review/results/img-1`)).json()) as Record<string, unknown>;
    expect(view).toMatchObject({ id: 'img-1', priority: 'stat', wireImage: { width: 256, height: 256 }, heatmaps: ['Cardiomegaly'], feedback: [] });
    expect(view).not.toHaveProperty('patientId');
    expect((await fetch(`${url}/v1/review/worklist?limit=0`)).status).toBe(400);

    const shown = await start({ showPatient: true });
    const withIds = (await (await fetch(`${shown.url}/v1/review/results/img-1`)).json()) as Record<string, unknown>;
    expect(withIds).toMatchObject({ studyUid: STUDY, accession: 'ACC-501', patientId: 'MRN-501' });
  });

  it('serves the page with a strict CSP and its assets, nothing else', async () => {
    const { url } = await start();
    const page = await fetch(`${url}/review`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
    expect(await page.text()).toMatch(/AI-asserted, preliminary/);
    expect((await fetch(`${url}/review/assets/review.js`)).headers.get('content-type')).toMatch(/text\/javascript/);
    expect((await fetch(`${url}/review/assets/..%2F..%2Fconfig.ts`)).status).toBe(404);
    expect((await fetch(`${url}/review/assets/index.html`)).status).toBe(404);
  });
});

describe('feedback', () => {
  it('stores one row per (image, model version, label, reviewer) and raises its revision only on change', async () => {
    const { url, publisher } = await start();
    const first = await post(`${url}/v1/findings/img-1/feedback`, { label: 'Cardiomegaly', verdict: 'agree', reviewer: 'dr-a' });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ published: true, feedback: { revision: 1, verdict: 'agree', reviewer: 'dr-a', comment: null, positive: true, studyUid: STUDY } });
    const same = (await (await post(`${url}/v1/findings/img-1/feedback`, { label: 'Cardiomegaly', verdict: 'agree', reviewer: 'dr-a' })).json()) as { feedback: FeedbackEvent };
    expect(same.feedback.revision).toBe(1);
    const changed = (await (await post(`${url}/v1/findings/img-1/feedback`, { label: 'Cardiomegaly', verdict: 'disagree', comment: '  AP film  ', reviewer: 'dr-a' })).json()) as { feedback: FeedbackEvent };
    expect(changed.feedback).toMatchObject({ revision: 2, verdict: 'disagree', comment: 'AP film' });
    await post(`${url}/v1/findings/img-1/feedback`, { label: 'Cardiomegaly', verdict: 'agree', reviewer: 'dr-b' });
    // Published once per revision, keyed by image id, no identifiers.
    expect(publisher.events().map((e) => [e.reviewer, e.revision, e.verdict])).toEqual([['dr-a', 1, 'agree'], ['dr-a', 2, 'disagree'], ['dr-b', 1, 'agree']]);
    expect(publisher.records.every((r) => r.key === 'img-1' && r.topic === 'thorax.feedback.v1')).toBe(true);
    expect(publisher.records.map((r) => r.value.toString()).join()).not.toMatch(/MRN-501|ACC-501/);
    const list = (await (await fetch(`${url}/v1/findings/img-1/feedback`)).json()) as { feedback: FeedbackEvent[] };
    expect(list.feedback.map((f) => [f.reviewer, f.revision])).toEqual([['dr-a', 2], ['dr-b', 1]]);
  });

  it('refuses bad requests with the field named', async () => {
    const { url } = await start();
    const bad: [unknown, RegExp][] = [
      [{ label: 'Cardiomegaly', verdict: 'maybe' }, /verdict/],
      [{ label: 'Banana', verdict: 'agree' }, /not one of the model's labels/],
      [{ label: 'Cardiomegaly', verdict: 'agree', comment: 'x'.repeat(1001) }, /comment/],
      [{ label: 'Cardiomegaly', verdict: 'agree', extra: 1 }, /unknown field/],
      [[1, 2], /JSON object/],
    ];
    for (const [body, message] of bad) {
      const res = await post(`${url}/v1/findings/img-1/feedback`, body);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    const text = await fetch(`${url}/v1/findings/img-1/feedback`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'agree' });
    expect(text.status).toBe(400);
    const huge = await post(`${url}/v1/findings/img-1/feedback`, { label: 'x'.repeat(20_000), verdict: 'agree' });
    expect(huge.status).toBe(400);
    expect((await post(`${url}/v1/findings/nope/feedback`, { label: 'Cardiomegaly', verdict: 'agree' })).status).toBe(404);
  });

  it('keeps a verdict the broker refused and the relay publishes it later (the store is the outbox)', async () => {
    const publisher = new RecordingPublisher();
    publisher.down = true;
    const { url, app } = await start({ publisher });
    const res = (await (await post(`${url}/v1/findings/img-old/feedback`, { label: 'Mass', verdict: 'disagree', reviewer: 'dr-c' })).json()) as { published: boolean };
    expect(res.published).toBe(false);
    expect(publisher.records).toHaveLength(0);
    // A fresh revision is left to the request that stored it, then swept once settled.
    expect(await new FeedbackRelay(app.get(FeedbackTopicPublisher), { intervalMs: 60_000 }, log).sweep()).toBe(0);
    const relay = new FeedbackRelay(app.get(FeedbackTopicPublisher), { intervalMs: 60_000, settledMs: 0 }, log);
    await expect(relay.sweep()).rejects.toThrow(/broker unavailable/);
    publisher.down = false;
    expect(await relay.sweep()).toBe(1);
    expect(publisher.events()).toMatchObject([{ id: 'img-old', label: 'Mass', verdict: 'disagree', reviewer: 'dr-c', revision: 1 }]);
    expect(await relay.sweep()).toBe(0);
    expect(await repo.feedback.unpublished(10)).toEqual([]);
  });
});

describe('with bearer auth', () => {
  let key: CryptoKey;
  let auth: TokenVerifier;
  const token = (claims: Record<string, unknown>, subject?: string) => {
    const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setIssuer(ISSUER).setIssuedAt().setExpirationTime('5m');
    return (subject ? jwt.setSubject(subject) : jwt).sign(key);
  };

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    key = pair.privateKey;
    writeFileSync(path.join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] }));
    const verifier = tokenVerifierFromConfig(loadConfig(resultsConfigSchema, { AUTH_JWKS_FILE: path.join(dir, 'jwks.json'), AUTH_ISSUER: ISSUER }));
    if (!verifier) throw new Error('auth not configured');
    auth = verifier;
  });

  it('keeps the page public, needs the read scope for its APIs and signs verdicts with the subject', async () => {
    const { url, publisher } = await start({ auth });
    expect((await fetch(`${url}/review`)).status).toBe(200);
    expect((await fetch(`${url}/v1/review/worklist`)).status).toBe(401);
    expect((await fetch(`${url}/v1/findings/img-1/image`)).status).toBe(401);
    const noScope = await token({ scope: 'openid' }, 'dr-x');
    expect((await fetch(`${url}/v1/findings/img-1/image`, { headers: { authorization: `Bearer ${noScope}` } })).status).toBe(403);
    const reader = await token({ scope: 'thorax.read' }, 'radiologist-17');
    expect((await fetch(`${url}/v1/findings/img-1/image`, { headers: { authorization: `Bearer ${reader}` } })).status).toBe(200);
    const res = await post(`${url}/v1/findings/img-1/feedback`, { label: 'Effusion', verdict: 'agree' }, { authorization: `Bearer ${reader}` });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { feedback: FeedbackEvent }).feedback.reviewer).toBe('radiologist-17');
    expect(publisher.events().map((e) => e.reviewer)).toEqual(['radiologist-17']);
    // With auth on, the body cannot name someone else, and a token must name someone.
    expect((await post(`${url}/v1/findings/img-1/feedback`, { label: 'Effusion', verdict: 'agree', reviewer: 'dr-a' }, { authorization: `Bearer ${reader}` })).status).toBe(400);
    const anonymous = await token({ scope: 'thorax.read' });
    expect((await post(`${url}/v1/findings/img-1/feedback`, { label: 'Effusion', verdict: 'agree' }, { authorization: `Bearer ${anonymous}` })).status).toBe(403);
    expect((await post(`${url}/v1/findings/img-1/feedback`, { label: 'Effusion', verdict: 'agree' }, { authorization: `Bearer ${noScope}` })).status).toBe(403);
  });
});
