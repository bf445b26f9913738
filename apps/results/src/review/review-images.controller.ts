import { Controller, Get, Inject, Param, Query, Req, Res, UseFilters } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import { ResultsApiError } from '../api/api-error';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { FindingsReader } from '../findings/findings-reader.service';
import { entityTag, HeatmapRenderer } from './heatmap-renderer';
import { ReviewObjects } from './review-objects';

/**
 * The wire image and the heatmaps of a result as PNG. The wire image is streamed from the object
 * store; a heatmap is rendered on request from the result's activation maps (HeatmapRenderer), or,
 * for results of older producers, streamed as the PNG they stored. Review objects are write-once
 * (a new image or map gets a new key), so the entity tag is a digest of the object's URI and size
 * (for a rendered heatmap also the label and the rendering's version), known before a byte is
 * read; `If-None-Match` answers 304 without opening the object. Private caching only: the pixels
 * are patient data.
 */
@Controller('v1/findings')
@UseFilters(ResultsApiErrorFilter)
export class ReviewImagesController {
  constructor(
    private readonly reader: FindingsReader,
    private readonly objects: ReviewObjects,
    private readonly renderer: HeatmapRenderer,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  @Get(':id/image')
  async image(@Param('id') id: string, @Query('modelVersion') modelVersion: unknown, @Req() req: Request, @Res() res: Response): Promise<void> {
    const event = await this.result(id, modelVersion);
    if (!event.wireImage) throw new ResultsApiError('NOT_FOUND', `no wire image was kept for ${JSON.stringify(id)}`);
    await this.send(event.wireImage.uri, 'wire image', req, res);
  }

  @Get(':id/heatmaps/:label')
  async heatmap(
    @Param('id') id: string,
    @Param('label') label: string,
    @Query('modelVersion') modelVersion: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const event = await this.result(id, modelVersion);
    const maps = event.activationMaps;
    if (maps?.labels.includes(label)) {
      const size = await this.objects.size(maps.uri, 'activation maps').catch((error: unknown) => {
        this.renderer.failed(error);
        throw error;
      });
      const etag = this.renderer.etag(maps.uri, size, label);
      if (this.notModified(etag, req, res)) return;
      const { png, source } = await this.renderer.render({ uri: maps.uri, size, label, etag });
      this.renderer.served(source);
      this.cacheHeaders(etag, res);
      res.status(200).type('image/png').setHeader('Content-Length', String(png.length));
      res.end(png);
      return;
    }
    // Results of older producers: one stored PNG per positive label.
    const stored = (event.heatmaps ?? []).find((h) => h.label === label);
    if (!stored) throw new ResultsApiError('NOT_FOUND', `no heatmap of ${JSON.stringify(label)} for ${JSON.stringify(id)}`);
    if (await this.send(stored.uri, 'heatmap', req, res)) this.renderer.served('stored');
  }

  private async result(id: string, modelVersion: unknown): Promise<FindingsEvent> {
    if (modelVersion !== undefined && typeof modelVersion !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be given once');
    return (await this.reader.get(id, modelVersion)).event;
  }

  /** True (and 304 sent) when the client holds this entity already. */
  private notModified(etag: string, req: Request, res: Response): boolean {
    const match = req.headers['if-none-match'];
    if (!match || !match.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)) return false;
    this.cacheHeaders(etag, res);
    res.status(304).end();
    return true;
  }

  /** Caching headers of a 200 or 304 (never of an error: a browser must not keep a 404 for a day). */
  private cacheHeaders(etag: string, res: Response): void {
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, max-age=86400');
    res.setHeader('X-Content-Type-Options', 'nosniff');
  }

  /** Streams a stored PNG; false when it answered 304. */
  private async send(uri: string, what: string, req: Request, res: Response): Promise<boolean> {
    const size = await this.objects.size(uri, what);
    const etag = entityTag(uri, size);
    if (this.notModified(etag, req, res)) return false;
    const body = await this.objects.open(uri, what);
    this.cacheHeaders(etag, res);
    res.status(200).type('image/png').setHeader('Content-Length', String(size));
    try {
      await pipeline(body, res);
    } catch (error) {
      // Headers are out: the client sees a cut-off body (Content-Length tells it), not a JSON error.
      this.log.warn({ err: error, what }, 'streaming a review image failed');
    }
    return true;
  }
}
