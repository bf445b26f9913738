import { Inject, Injectable } from '@nestjs/common';
import {
  ACTIVATION_MAPS_CONTENT_TYPE,
  ACTIVATION_MAPS_FORMAT,
  type ActivationMapsRef,
  encodeActivationMaps,
  type WireImageRef,
} from '@thorax/contracts';
import { encodeGreyPng } from '@thorax/imaging';
import type { ModelMetadata } from '@thorax/model-runtime';
import { LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import type { ObjectStore } from '@thorax/object-store';
import { createHash } from 'node:crypto';
import { Counter, Histogram } from 'prom-client';
import { INFERENCE_CONFIG, type InferenceConfig } from '../config';
import { REVIEW_OBJECT_STORE } from './object-store.provider';

/** Key prefix of review objects: kept with the results (docs/object-store.md). */
export const REVIEW_PREFIX = 'review/';

/** The references a findings event carries; both null when nothing was kept. */
export interface ReviewImages {
  wireImage: WireImageRef | null;
  /** Every label's class activation maps; null for a model without maps. */
  activationMaps: ActivationMapsRef | null;
}

export const NO_REVIEW_IMAGES: ReviewImages = { wireImage: null, activationMaps: null };

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
 * Stores what the review of one image needs: the wire image as an uncompressed grey PNG (a copy
 * of the pixels with PNG framing, about 0.2 ms) and, when the model has class activation maps,
 * the maps of every label as one small
 * `thorax.cam.v1` object (3.4 kB for the demonstration model's 14 labels of 7×7). No heatmap is rendered here: results
 * renders a label's heatmap from the maps when a reviewer asks for it. Both objects are written
 * before this resolves, so the findings event that names them is published after them. A store or
 * encoder failure never fails the image: it is logged and counted, and the event carries no
 * review objects (wireImage null, no activationMaps) rather than a reference that could dangle.
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
      help: 'Images whose review objects (wire image, activation maps) were stored, or failed to be (the event then has none)',
      labelNames: ['outcome'],
      registers: [metrics.registry],
    });
    // Both series from 0, so a failure ratio and an alert's increase() see the first failure.
    if (config.INFERENCE_REVIEW_IMAGES) for (const outcome of ['stored', 'failed']) this.outcomes.inc({ outcome }, 0);
    this.seconds = new Histogram({
      name: 'thorax_review_images_seconds',
      help: 'Encoding and storing the review objects of one image (wire PNG, plus the activation maps object when the model has maps)',
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
   * this image (labels×h×w, label-major) or null.
   */
  async keep(args: { id: string; pixels: Uint8Array; width: number; height: number; metadata: ModelMetadata; maps: Float32Array | null }): Promise<ReviewImages> {
    if (!this.enabled) return NO_REVIEW_IMAGES;
    const started = process.hrtime.bigint();
    const withMaps = args.maps !== null && args.metadata.cam !== null;
    try {
      const prefix = reviewKeyPrefix(args.id, args.metadata.version);
      const cam = reviewMapsObject(args);
      const [wire, maps] = await Promise.all([
        this.store.put(`${prefix}wire.png`, encodeGreyPng(args.pixels, args.width, args.height), { contentType: 'image/png' }),
        cam ? this.store.put(`${prefix}cam.bin`, cam.bytes, { contentType: ACTIVATION_MAPS_CONTENT_TYPE }) : null,
      ]);
      this.outcomes.inc({ outcome: 'stored' });
      return {
        wireImage: { uri: wire.uri, width: args.width, height: args.height },
        activationMaps: cam && maps ? { uri: maps.uri, ...cam.ref } : null,
      };
    } catch (error) {
      this.outcomes.inc({ outcome: 'failed' });
      this.log.warn(
        { err: error, imageId: args.id, modelVersion: args.metadata.version },
        'review objects could not be stored; the findings event is published without them',
      );
      return NO_REVIEW_IMAGES;
    } finally {
      this.seconds.observe({ maps: String(withMaps) }, Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}

/**
 * The `thorax.cam.v1` object of one image (every label's map, its bias, the region of the wire
 * image the maps cover) and what the findings event says of it; null for a model without maps.
 */
export function reviewMapsObject(args: {
  width: number;
  height: number;
  metadata: ModelMetadata;
  maps: Float32Array | null;
}): { bytes: Buffer; ref: Omit<ActivationMapsRef, 'uri'> } | null {
  const { metadata, maps } = args;
  const cam = metadata.cam;
  if (!maps || !cam) return null;
  const [, , height, width] = cam.shape;
  const bytes = encodeActivationMaps({
    labels: metadata.labels,
    height,
    width,
    image: { width: args.width, height: args.height },
    region: cam.region,
    units: 'logit',
    bias: cam.bias,
    maps,
  });
  return { bytes, ref: { format: ACTIVATION_MAPS_FORMAT, labels: [...metadata.labels], height, width, region: { ...cam.region } } };
}
