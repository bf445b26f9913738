import { Controller, Get, Param, Req, Res } from '@nestjs/common';
import { Public } from '@thorax/observability';
import type { Request, Response } from 'express';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** The page may load only its own files, and data only from this origin; no inline script, no frames. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The review page's files (assets/ beside this file; scripts/build.mjs copies them into dist), read once. */
export function loadReviewAssets(dir = path.join(__dirname, 'assets')): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    const body = readFileSync(path.join(dir, name));
    assets.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` });
  }
  if (!assets.has('index.html')) throw new Error(`review page assets missing in ${dir}`);
  return assets;
}

/**
 * GET /review: the radiologist review page (docs/review.md), a static shell with no data in it,
 * so it is public; everything it shows comes from the APIs, which need the read scope when
 * authentication is on (the page then asks for a token). No CDN, nothing from another origin.
 */
@Controller('review')
@Public()
export class ReviewPageController {
  private readonly assets = loadReviewAssets();

  @Get()
  page(@Req() req: Request, @Res() res: Response): void {
    this.send('index.html', req, res);
  }

  @Get('assets/:name')
  asset(@Param('name') name: string, @Req() req: Request, @Res() res: Response): void {
    this.send(name, req, res);
  }

  private send(name: string, req: Request, res: Response): void {
    const asset = name === 'index.html' && req.path.includes('/assets/') ? undefined : this.assets.get(name);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    if (!asset) {
      res.status(404).json({ error: { code: 'NOT_FOUND', message: 'no such review page file' } });
      return;
    }
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('ETag', asset.etag);
    if (req.headers['if-none-match'] === asset.etag) {
      res.status(304).end();
      return;
    }
    res.status(200).type(asset.type).send(asset.body);
  }
}
