import { Controller, Inject, Post, Req, Res } from '@nestjs/common';
import { type IntakeOptions, parseDicomFile } from '@thorax/imaging';
import { LOGGER, type Logger, principalOf } from '@thorax/observability';
import type { Request, Response } from 'express';
import { once } from 'node:events';
import { EdgeAudit } from '../audit/edge-audit';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { InstanceSubmitter } from '../edge/instance-submitter';
import { checkInstance, FAILURE, InstanceRefused, submitFailure } from '../dimse/instance-check';
import { InstanceSpool, SPOOL_MEMORY_BYTES } from '../dimse/instance-spool';
import { intakeOptions } from '../studies/study-intake.service';
import { MalformedMultipart, MultipartReader, parseMediaType } from './multipart-related';
import { type StoreOutcome, storeResponse, storeStatus } from './store-response';

const UID = /^[0-9]+(\.[0-9]+)*$/;
const DICOM_JSON = 'application/dicom+json';

class BodyTooLarge extends Error {}

type HttpRefusal = { status: number; code: string; message: string };

/**
 * STOW-RS (PS3.18 10.5): `POST /dicomweb/studies[/{study}]` with
 * `multipart/related; type="application/dicom"`. Parts are read as the request arrives, each
 * checked (header, SOP class, transfer syntax, clinical gates, study of the URL) and handed to
 * the pipeline before the next is read; the answer lists each instance as stored (its record
 * acknowledged by Kafka) or failed with its FailureReason.
 */
@Controller('dicomweb')
export class StowController {
  private readonly intake: IntakeOptions;

  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    private readonly submitter: InstanceSubmitter,
    private readonly audit: EdgeAudit,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.intake = intakeOptions(config);
  }

  @Post('studies')
  storeAny(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.store(req, res, undefined);
  }

  @Post('studies/:study')
  storeStudy(@Req() req: Request, @Res() res: Response): Promise<void> {
    return this.store(req, res, String(req.params['study'] ?? ''));
  }

  private async store(req: Request, res: Response, study: string | undefined): Promise<void> {
    const startedAt = new Date();
    const outcomes: StoreOutcome[] = [];
    let status = 500;
    let outcome = 'error';
    try {
      const checked = this.precheck(req, study);
      if ('status' in checked) {
        status = checked.status;
        outcome = checked.code;
        return this.refuse(res, checked);
      }
      const { boundary } = checked;
      try {
        await this.readParts(new MultipartReader(this.counted(req), boundary), study, outcomes);
      } catch (error) {
        if (error instanceof MalformedMultipart || error instanceof BodyTooLarge) {
          const tooLarge = error instanceof BodyTooLarge;
          const stored = outcomes.some((o) => o.failureReason === undefined);
          if (tooLarge || !stored) {
            res.setHeader('Connection', 'close');
            const refused = tooLarge
              ? { status: 413, code: 'PAYLOAD_TOO_LARGE', message: `the request body exceeds ${this.config.INGEST_STOW_MAX_BYTES} bytes (INGEST_STOW_MAX_BYTES)` }
              : { status: 400, code: 'INVALID_ARGUMENT', message: `malformed multipart body: ${error.message}` };
            status = refused.status;
            outcome = refused.code;
            return this.refuse(res, refused, stored ? outcomes : undefined);
          }
          // Some instances were stored before the body broke: say which (202), so they are not sent again.
          this.log.warn({ edge: 'dicomweb', err: { message: error.message } }, 'STOW-RS body broke after stored instances');
          status = 202;
          outcome = 'partial';
          res.status(202).type(DICOM_JSON).send(JSON.stringify(storeResponse(outcomes)));
          return;
        }
        throw error;
      }
      if (outcomes.length === 0) {
        status = 400;
        outcome = 'INVALID_ARGUMENT';
        return this.refuse(res, { status, code: outcome, message: 'the multipart body has no parts' });
      }
      status = storeStatus(outcomes);
      outcome = status === 200 ? 'stored' : status === 202 ? 'partial' : 'none-stored';
      res.status(status).type(DICOM_JSON).send(JSON.stringify(storeResponse(outcomes)));
    } catch (error) {
      this.log.error({ edge: 'dicomweb', err: error }, 'STOW-RS request failed');
      if (!res.headersSent) res.status(500).json({ error: { code: 'INTERNAL_ERROR', message: 'the request could not be handled' } });
    } finally {
      const stored = outcomes.filter((o) => o.failureReason === undefined).length;
      this.audit.request({
        edge: 'dicomweb',
        route: study === undefined ? 'POST /dicomweb/studies' : 'POST /dicomweb/studies/:study',
        client: req.ip ?? req.socket.remoteAddress ?? 'unknown',
        subject: principalOf(req)?.subject ?? null,
        startedAt,
        endedAt: new Date(),
        instancesStored: stored,
        instancesFailed: outcomes.length - stored,
        status,
        outcome,
      });
    }
  }

  /** What can be refused before a byte of the body is read. */
  private precheck(req: Request, study: string | undefined): HttpRefusal | { boundary: string } {
    if (!this.config.INGEST_STOW_ENABLED) return { status: 404, code: 'NOT_FOUND', message: 'STOW-RS is off (INGEST_STOW_ENABLED=false)' };
    if (study !== undefined && (study.length > 64 || !UID.test(study))) {
      return { status: 400, code: 'INVALID_ARGUMENT', message: 'the study in the URL is not a UID' };
    }
    if (!acceptsDicomJson(req.headers.accept)) {
      return { status: 406, code: 'NOT_ACCEPTABLE', message: `the store response is ${DICOM_JSON}` };
    }
    const media = parseMediaType(req.headers['content-type']);
    if (media?.type !== 'multipart/related') {
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'expected multipart/related; type="application/dicom"' };
    }
    const partType = media.params['type']?.toLowerCase();
    if (partType !== undefined && partType !== 'application/dicom') {
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: `multipart/related of ${partType} is not accepted; send application/dicom parts` };
    }
    const boundary = media.params['boundary'];
    if (!boundary) return { status: 400, code: 'INVALID_ARGUMENT', message: 'multipart/related without a boundary parameter' };
    const declared = Number(req.headers['content-length'] ?? Number.NaN);
    if (Number.isFinite(declared) && declared > this.config.INGEST_STOW_MAX_BYTES) {
      return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: `the request body exceeds ${this.config.INGEST_STOW_MAX_BYTES} bytes (INGEST_STOW_MAX_BYTES)` };
    }
    return { boundary };
  }

  private async readParts(reader: MultipartReader, study: string | undefined, outcomes: StoreOutcome[]): Promise<void> {
    for (let part = await reader.next(); part !== null; part = await reader.next()) {
      const spool = new InstanceSpool({ maxBytes: this.config.INGEST_STOW_MAX_INSTANCE_BYTES });
      let uids: Pick<StoreOutcome, 'sopClassUid' | 'sopInstanceUid'> = { sopClassUid: null, sopInstanceUid: null };
      try {
        for await (const chunk of part.body) if (!spool.write(chunk)) await once(spool, 'drain');
        spool.end();
        if (!spool.writableFinished) await once(spool, 'finish');
        const partType = parseMediaType(part.headers['content-type']);
        if (part.headers['content-type'] !== undefined && partType?.type !== 'application/dicom') {
          throw new InstanceRefused(FAILURE.cannotUnderstand, 'part is not application/dicom');
        }
        if (spool.overflowed) {
          throw new InstanceRefused(FAILURE.outOfResources, `instance larger than ${this.config.INGEST_STOW_MAX_INSTANCE_BYTES} bytes`);
        }
        const checked = checkInstance(await spool.prefix(SPOOL_MEMORY_BYTES), this.intake, study === undefined ? {} : { studyInstanceUid: study });
        uids = { sopClassUid: checked.sopClassUid, sopInstanceUid: checked.sopInstanceUid };
        await this.submitter.submit({ id: checked.sopInstanceUid, contentType: 'application/dicom', body: spool.body(), source: 'dicomweb' });
        outcomes.push(uids);
        this.audit.instance('dicomweb', 'stored');
      } catch (error) {
        if (error instanceof MalformedMultipart || error instanceof BodyTooLarge) throw error;
        const refused = submitFailure(error);
        if (!(error instanceof InstanceRefused)) this.log.warn({ edge: 'dicomweb', err: error }, 'STOW-RS instance not handed on');
        if (uids.sopInstanceUid === null) uids = await peekUids(spool, this.intake);
        outcomes.push({ ...uids, failureReason: refused.status });
        this.audit.instance('dicomweb', 'failed');
      } finally {
        await spool.discard();
      }
    }
  }

  /** The request body, counted: past INGEST_STOW_MAX_BYTES it stops with BodyTooLarge. */
  private counted(req: Request): AsyncIterable<Buffer> {
    const max = this.config.INGEST_STOW_MAX_BYTES;
    return (async function* () {
      let total = 0;
      for await (const chunk of req as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > max) throw new BodyTooLarge();
        yield chunk;
      }
    })();
  }

  private refuse(res: Response, refusal: HttpRefusal, outcomes?: StoreOutcome[]): void {
    const body = { error: { code: refusal.code, message: refusal.message }, ...(outcomes ? { stored: storeResponse(outcomes) } : {}) };
    res.status(refusal.status).json(body);
  }
}

/** Accept: absent, or naming application/dicom+json, application/json or a wildcard. */
function acceptsDicomJson(accept: string | undefined): boolean {
  if (!accept) return true;
  return accept
    .split(',')
    .map((range) => (range.split(';')[0] ?? '').trim().toLowerCase())
    .some((range) => ['application/dicom+json', 'application/json', 'application/*', '*/*'].includes(range));
}

/** The UIDs of a refused part when its header parses at all, for its FailedSOPSequence item. */
async function peekUids(spool: InstanceSpool, intake: IntakeOptions): Promise<Pick<StoreOutcome, 'sopClassUid' | 'sopInstanceUid'>> {
  try {
    const { info, dataSet } = parseDicomFile(await spool.prefix(SPOOL_MEMORY_BYTES), intake, { untilPixelData: true, stage: 'ingest' });
    const sopClassUid = (dataSet.string('x00080016') ?? '').replace(/\0/g, '').trim();
    return { sopClassUid: UID.test(sopClassUid) ? sopClassUid : null, sopInstanceUid: UID.test(info.sopInstanceUid) ? info.sopInstanceUid : null };
  } catch {
    return { sopClassUid: null, sopInstanceUid: null };
  }
}
