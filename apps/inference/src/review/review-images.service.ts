import { Inject, Injectable } from '@nestjs/common';
import type { HeatmapRef, WireImageRef } from '@thorax/contracts';
import { encodeGreyPng, encodeRgbaPng, heatmapRgba } from '@thorax/imaging';
import type { ModelMetadata } from '@thorax/model-runtime';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import type { ObjectStore } from '@thorax/object-store';
import { createHash } from 'node:crypto';
import { Counter, Histogram } from 'prom-client';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { REVIEW_OBJECT_STORE } from './object-store.provider';

/** Key prefix of review images: kept with the results (docs/object-store.md). */
export const REVIEW_PREFIX = 'review/';

/** The references a findings event carries; wireImage null and no heatmaps when nothing was kept. */
export interface ReviewImages {
  wireImage: WireImageRef | null;
  heatmaps: HeatmapRef[];
}

export const NO_REVIEW_IMAGES: ReviewImages = { wireImage: null, heatmaps: [] };

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/**
 * A key segment for an image id or model version: itself when it is a valid object-store segment
 * (SOP Instance UIDs and the usual ids are), else `_sha256-` and the hex SHA-256 of it.
 */
export function keySegment(value: string): string {
  return SEGMENT.test(value) && value !== '.' && value !== '..'
    ? value
    : `_sha256-${createHash('sha256').update(value).digest('hex')}`;
}

/** `review/<id>/<model version>/`: one folder per image and model version (a replay overwrites). */
export function reviewKeyPrefix(id: string, modelVersion: string): string {
  return `${REVIEW_PREFIX}${keySegment(id)}/${keySegment(modelVersion)}/`;
}

/**
 * Renders and stores the review images of one image: the wire image as a grey PNG and, when the
 * model has class activation maps, one RGBA heatmap PNG per positive label (heatmap.ts). PNG
 * encoding runs on libvips' threads (sharp), not on the event loop. Every object is written
 * before this resolves, so the findings event that names them is published after them. A store
 * or encoder failure never fails the image: it is logged and counted, and the event carries no
 * review images (wireImage null, heatmaps empty) rather than a reference that could dangle.
 */
@Injectable()
export class ReviewImagesService {
  private readonly outcomes: Counter<'outcome'>;
  private readonly seconds: Histogram<'maps'>;

  constructor(
    @Inject(INFERENCE_CONFIG) private readonly config: InferenceConfig,
    @Inject(REVIEW_OBJECT_STORE) private readonly store: ObjectStore,
    @Inject(LOGGER) private readonly log: Logger,
    metrics: ThoraxMetrics,
  ) {
    this.outcomes = new Counter({
      name: 'thorax_review_images_total',
      help: 'Images whose review images (wire image, heatmaps) were stored, or failed to be (the event then has none)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    this.seconds = new Histogram({
      name: 'thorax_review_images_seconds',
      help: 'Rendering and storing the review images of one image (wire PNG plus one heatmap per positive label)',
      labelNames: ['maps'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [metrics.registry],
    });
  }

  get enabled(): boolean {
    return this.config.INFERENCE_REVIEW_IMAGES;
  }

  /**
   * `pixels`: the wire image (width×height grey8). `maps`: the model's class activation maps for
   * this image (labels×h×w) or null. `positives`: indices of the positive labels.
   */
  async keep(args: {
    id: string;
    pixels: Uint8Array;
    width: number;
    height: number;
    metadata: ModelMetadata;
    maps: Float32Array | null;
    positives: number[];
  }): Promise<ReviewImages> {
    if (!this.enabled) return NO_REVIEW_IMAGES;
    const started = process.hrtime.bigint();
    const withMaps = args.maps !== null && args.metadata.cam !== null;
    try {
      const images = await renderReviewImages(args);
      const prefix = reviewKeyPrefix(args.id, args.metadata.version);
      const [wire, ...maps] = await Promise.all([
        this.store.put(`${prefix}wire.png`, images.wire, { contentType: 'image/png' }),
        ...images.heatmaps.map((h) =>
          this.store.put(`${prefix}heatmap-${keySegment(h.label)}.png`, h.png, { contentType: 'image/png' }),
        ),
      ]);
      this.outcomes.inc({ outcome: 'stored' });
      return {
        wireImage: { uri: (wire as { uri: string }).uri, width: args.width, height: args.height },
        heatmaps: images.heatmaps.map((h, i) => ({ label: h.label, uri: (maps[i] as { uri: string }).uri })),
      };
    } catch (error) {
      this.outcomes.inc({ outcome: 'failed' });
      this.log.warn(
        { err: error, imageId: args.id, modelVersion: args.metadata.version },
        'review images could not be stored; the findings event is published without them',
      );
      return NO_REVIEW_IMAGES;
    } finally {
      this.seconds.observe({ maps: String(withMaps) }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}

/**
 * The PNGs of one image: the wire image (grey, 8-bit) and one RGBA heatmap per positive label
 * the size of the wire image (none when there are no maps). Encoding runs on sharp's threads.
 */
export async function renderReviewImages(args: {
  pixels: Uint8Array;
  width: number;
  height: number;
  metadata: ModelMetadata;
  maps: Float32Array | null;
  positives: number[];
}): Promise<{ wire: Buffer; heatmaps: { label: string; png: Buffer }[] }> {
  const { pixels, width, height, metadata, maps } = args;
  const wire = encodeGreyPng(pixels, width, height);
  const cam = metadata.cam;
  const heatmaps =
    maps && cam
      ? args.positives.map(async (index) => {
          // Pixels in JavaScript (a 7x7 map upsampled: well under a millisecond), PNG on libvips.
          const rgba = heatmapRgba(maps, index, { height: cam.shape[2], width: cam.shape[3], region: cam.region }, width, height);
          return { label: metadata.labels[index] ?? String(index), png: await encodeRgbaPng(rgba, width, height) };
        })
      : [];
  const [wireBuffer, ...heatmapBuffers] = await Promise.all([wire, ...heatmaps]);
  return { wire: wireBuffer as Buffer, heatmaps: heatmapBuffers as { label: string; png: Buffer }[] };
}
