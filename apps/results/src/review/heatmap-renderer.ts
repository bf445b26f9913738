import { Inject, Injectable } from '@nestjs/common';
import { ACTIVATION_MAPS_MAX_BYTES, type ActivationMaps, decodeActivationMaps } from '@thorax/contracts';
import { encodeRgbaPng, HEATMAP_RENDER_VERSION, heatmapRgba } from '@thorax/imaging';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import { createHash } from 'node:crypto';
import { Counter, Histogram } from 'prom-client';
import { ResultsApiError } from '../api/api-error';
import { ReviewObjects } from './review-objects';

/** Bytes of rendered heatmap PNGs kept in memory (about 28 kB each: some 600 heatmaps). */
export const HEATMAP_CACHE_BYTES = 16 * 1024 * 1024;

/** What the heatmap route answered from: `rendered` now, the `cache`, or a `stored` PNG of an older producer. */
export type HeatmapSource = 'rendered' | 'cache' | 'stored';

/**
 * Least recently used buffers up to a byte budget; a buffer over an eighth of the budget is not
 * kept (it would evict too much).
 */
export class BufferLru {
  private readonly entries = new Map<string, Buffer>();
  private used = 0;

  constructor(readonly budget: number) {}

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): Buffer | undefined {
    const hit = this.entries.get(key);
    if (hit) {
      // Most recently used last.
      this.entries.delete(key);
      this.entries.set(key, hit);
    }
    return hit;
  }

  set(key: string, value: Buffer): void {
    if (value.length > this.budget / 8) return;
    const old = this.entries.get(key);
    if (old) {
      this.entries.delete(key);
      this.used -= old.length;
    }
    this.entries.set(key, value);
    this.used += value.length;
    for (const [k, v] of this.entries) {
      if (this.used <= this.budget) break;
      this.entries.delete(k);
      this.used -= v.length;
    }
  }
}

/** The strong entity tag of an object-store object: a digest of what identifies its bytes. */
export function entityTag(...parts: (string | number)[]): string {
  return `"${createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 32)}"`;
}

/**
 * Renders a label's heatmap from an image's activation maps (`thorax.cam.v1`) when a reviewer asks
 * for it: the label's map upsampled, normalised and coloured by libs/imaging (heatmapRgba, the
 * scale of docs/inference.md), encoded as an RGBA PNG the size of the wire image on libvips'
 * threads. The result depends only on the maps object (its URI and size), the label and
 * HEATMAP_RENDER_VERSION: that is its entity tag, and the key of a small LRU of rendered PNGs
 * (HEATMAP_CACHE_BYTES); concurrent requests for the same heatmap share one rendering.
 */
/** Why a heatmap could not be rendered (thorax_review_heatmap_failures_total{reason}). */
const RENDER_FAILURES = ['missing', 'unreadable', 'store_unavailable'] as const;

@Injectable()
export class HeatmapRenderer {
  private readonly cache = new BufferLru(HEATMAP_CACHE_BYTES);
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  private readonly seconds: Histogram<never>;
  private readonly answers: Counter<'source'>;
  private readonly failures: Counter<'reason'>;

  constructor(
    private readonly objects: ReviewObjects,
    @Inject(LOGGER) private readonly log: Logger,
    metrics: ThoraxMetrics,
  ) {
    this.seconds = new Histogram({
      name: 'thorax_review_heatmap_render_seconds',
      help: 'Rendering one heatmap from activation maps on request (read and decode the maps, pixels, PNG); cache hits are not observed',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [metrics.registry],
    });
    this.answers = new Counter({
      name: 'thorax_review_heatmaps_total',
      help: 'Heatmap PNGs served (200), by source: rendered from activation maps, from the in-memory cache, or a stored PNG of an older producer',
      labelNames: ['source'],
      registers: [metrics.registry],
    });
    this.failures = new Counter({
      name: 'thorax_review_heatmap_failures_total',
      help: 'Heatmaps that could not be rendered, by reason: missing (maps object gone), unreadable (it does not decode), store_unavailable',
      labelNames: ['reason'],
      registers: [metrics.registry],
    });
    // Every series from 0, so a ratio and an alert's increase() see the first failure.
    for (const reason of RENDER_FAILURES) this.failures.inc({ reason }, 0);
  }

  /** The entity tag of `label`'s heatmap rendered from the maps object `uri` of `size` bytes. */
  etag(uri: string, size: number, label: string): string {
    return entityTag(uri, size, `heatmap ${label}`, `render ${HEATMAP_RENDER_VERSION}`);
  }

  /** Counts a heatmap that cannot be rendered: its maps object is gone, unreadable, or the store is down. */
  failed(error: unknown): void {
    const code = error instanceof ResultsApiError ? error.code : 'INTERNAL';
    this.failures.inc({ reason: code === 'NOT_FOUND' ? 'missing' : code === 'UNAVAILABLE' ? 'store_unavailable' : 'unreadable' });
  }

  /** Counts a 200 answer by where its bytes came from. */
  served(source: HeatmapSource): void {
    this.answers.inc({ source });
  }

  /** The PNG of `label`'s heatmap; `etag` from etag(uri, size, label). */
  async render(args: { uri: string; size: number; label: string; etag: string }): Promise<{ png: Buffer; source: HeatmapSource }> {
    const hit = this.cache.get(args.etag);
    if (hit) return { png: hit, source: 'cache' };
    let work = this.inFlight.get(args.etag);
    if (!work) {
      work = this.renderNow(args).finally(() => this.inFlight.delete(args.etag));
      this.inFlight.set(args.etag, work);
    }
    return { png: await work, source: 'rendered' };
  }

  private async renderNow(args: { uri: string; size: number; label: string; etag: string }): Promise<Buffer> {
    const started = process.hrtime.bigint();
    if (args.size > ACTIVATION_MAPS_MAX_BYTES) throw this.unreadable(args.uri, new Error(`${args.size} bytes`));
    let maps: ActivationMaps;
    try {
      maps = decodeActivationMaps(await this.objects.read(args.uri, 'activation maps'));
    } catch (error) {
      if (error instanceof ResultsApiError) {
        this.failed(error);
        throw error;
      }
      throw this.unreadable(args.uri, error);
    }
    const index = maps.labels.indexOf(args.label);
    if (index < 0) throw new ResultsApiError('NOT_FOUND', `no activation map of ${JSON.stringify(args.label)}`);
    const { width, height } = maps.image;
    const png = await encodeRgbaPng(heatmapRgba(maps.maps, index, maps, width, height), width, height);
    this.seconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    this.cache.set(args.etag, png);
    return png;
  }

  private unreadable(uri: string, cause: unknown): ResultsApiError {
    this.failed(null);
    // The URI is an object key (image id and model version), not patient data.
    this.log.warn({ err: cause, uri }, 'activation maps object cannot be read');
    return new ResultsApiError('INTERNAL', 'the activation maps of this result cannot be read', { cause });
  }
}
