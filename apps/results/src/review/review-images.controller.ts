import { Controller, Get, Inject, Param, Query, Req, Res, UseFilters } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import type { Request, Response } from 'express';
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { ResultsApiError } from '../api/api-error';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { FindingsReader } from '../findings/findings-reader.service';
import { ReviewObjects } from './review-objects';

/**
 * The wire image and the heatmaps of a result, streamed from the object store as PNG. Review
 * objects are write-once (a new image or map gets a new key), so the entity tag is a digest of the
 * object's URI and size, known before a byte is read; `If-None-Match` answers 304 without
 * opening the object. Private caching only: the pixels are patient data.
 */
@Controller('v1/findings')
@UseFilters(ResultsApiErrorFilter)
export class ReviewImagesController {
  constructor(
    private readonly reader: FindingsReader,
    private readonly objects: ReviewObjects,
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
    const map = (event.heatmaps ?? []).find((h) => h.label === label);
    if (!map) throw new ResultsApiError('NOT_FOUND', `no heatmap of ${JSON.stringify(label)} for ${JSON.stringify(id)}`);
    await this.send(map.uri, 'heatmap', req, res);
  }

  private async result(id: string, modelVersion: unknown): Promise<FindingsEvent> {
    if (modelVersion !== undefined && typeof modelVersion !== 'string') throw new ResultsApiError('INVALID_ARGUMENT', 'modelVersion must be given once');
    return (await this.reader.get(id, modelVersion)).event;
  }

  private async send(uri: string, what: string, req: Request, res: Response): Promise<void> {
    const size = await this.objects.size(uri, what);
    const etag = `"${createHash('sha256').update(`${uri}\n${size}`).digest('base64url').slice(0, 32)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'private, max-age=86400');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    const match = req.headers['if-none-match'];
    if (match && match.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)) {
      res.status(304).end();
      return;
    }
    const body = await this.objects.open(uri, what);
    res.status(200).type('image/png').setHeader('Content-Length', String(size));
    try {
      await pipeline(body, res);
    } catch (error) {
      // Headers are out: the client sees a cut-off body (Content-Length tells it), not a JSON error.
      this.log.warn({ err: error, what }, 'streaming a review image failed');
    }
  }
}
