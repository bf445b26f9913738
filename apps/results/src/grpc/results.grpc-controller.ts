import { Inject, Injectable } from '@nestjs/common';
import {
  type ServerErrorResponse,
  type ServerWritableStream,
  status as GrpcStatus,
  type StatusObject,
} from '@grpc/grpc-js';
import type { ResultsServiceServer, WatchFindingsRequest, WatchFindingsResponse } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import { once } from 'node:events';
import { type ApiErrorCode, toApiError } from '../api/api-error';
import { encodeWatchCursor } from '../api/cursor';
import { FindingsReader } from '../findings/findings-reader.service';
import { toFindingsResult } from '../findings/findings.mapper';
import { listParamsFromGrpc } from '../findings/list-params';
import { StudiesReader } from '../studies/studies-reader.service';
import { toStudyMessage } from '../studies/study.mapper';

export const GRPC_STATUS_OF: Record<ApiErrorCode, GrpcStatus> = {
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  INTERNAL: GrpcStatus.INTERNAL,
};

/** thorax.v1.ResultsService over the shared read side. */
@Injectable()
export class ResultsGrpcController {
  /** Open WatchFindings streams, ended when the server shuts down. */
  private readonly watches = new Set<AbortController>();

  constructor(
    private readonly reader: FindingsReader,
    private readonly studies: StudiesReader,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  readonly service: ResultsServiceServer = {
    getFindings: (call, callback) => {
      this.reader.get(call.request.id, call.request.modelVersion).then(
        (stored) => callback(null, { result: toFindingsResult(stored) }),
        (error: unknown) => callback(this.status(error)),
      );
    },
    listFindings: (call, callback) => {
      this.reader.list(listParamsFromGrpc(call.request)).then(
        (page) => callback(null, { results: page.items.map(toFindingsResult), nextPageToken: page.nextPageToken ?? '' }),
        (error: unknown) => callback(this.status(error)),
      );
    },
    watchFindings: (call) => void this.watch(call),
    getStudy: (call, callback) => {
      this.studies.get(call.request.studyUid).then(
        (stored) => callback(null, { study: toStudyMessage(stored) }),
        (error: unknown) => callback(this.status(error)),
      );
    },
  };

  /** Ends every open watch stream (server shutdown). */
  endWatches(): void {
    for (const watch of this.watches) watch.abort();
  }

  private async watch(call: ServerWritableStream<WatchFindingsRequest, WatchFindingsResponse>): Promise<void> {
    const controller = new AbortController();
    const { signal } = controller;
    this.watches.add(controller);
    call.on('cancelled', () => controller.abort());
    call.on('close', () => controller.abort());
    try {
      await this.reader.watch(
        call.request.cursor,
        async (stored) => {
          const more = call.write({ result: toFindingsResult(stored), cursor: encodeWatchCursor(stored.seq) });
          if (!more) await once(call, 'drain', { signal });
        },
        signal,
      );
      if (!call.cancelled) call.end();
    } catch (error) {
      if (signal.aborted) {
        if (!call.cancelled) call.end();
      } else {
        call.emit('error', this.status(error));
      }
    } finally {
      this.watches.delete(controller);
    }
  }

  private status(error: unknown): Partial<StatusObject> & ServerErrorResponse {
    const apiError = toApiError(error);
    if (apiError.code === 'INTERNAL' || apiError.code === 'UNAVAILABLE') this.log.error({ err: error }, 'gRPC call failed');
    return Object.assign(new Error(apiError.message), { code: GRPC_STATUS_OF[apiError.code], details: apiError.message });
  }
}
