import { Inject, Injectable } from '@nestjs/common';
import { ResultsApiError } from '../api/api-error';
import { decodeWatchCursor, encodePageToken } from '../api/cursor';
import {
  FINDINGS_FEED,
  FINDINGS_QUERIES,
  type FindingsFeed,
  type FindingsQueries,
  type StoredFindings,
} from '../store/results-store.port';
import { followFindings } from './follow-findings';
import { type ListParams, toListQuery } from './list-params';

export interface ReaderOptions {
  /** How often a watch also polls the store, ms (results stored by other replicas). */
  watchPollMs: number;
}

export const READER_OPTIONS = Symbol('thorax.results.reader-options');

export interface ResultsPage {
  items: StoredFindings[];
  nextPageToken: string | null;
}

/** The findings read side shared by REST and gRPC: validation, cursors, queries, watch. */
@Injectable()
export class FindingsReader {
  constructor(
    @Inject(FINDINGS_QUERIES) private readonly findings: FindingsQueries,
    @Inject(FINDINGS_FEED) private readonly feed: FindingsFeed,
    @Inject(READER_OPTIONS) private readonly options: ReaderOptions,
  ) {}

  /** The latest result of an image, or the one of a model version; NOT_FOUND when absent. */
  async get(id: string, modelVersion?: string): Promise<StoredFindings> {
    if (!id) throw new ResultsApiError('INVALID_ARGUMENT', 'id is required');
    if (id.length > 256) throw new ResultsApiError('INVALID_ARGUMENT', 'id is longer than 256 characters');
    const stored = await this.findings.get(id, modelVersion || undefined);
    if (!stored) {
      const which = modelVersion ? ` for model version ${JSON.stringify(modelVersion)}` : '';
      throw new ResultsApiError('NOT_FOUND', `no findings stored for ${JSON.stringify(id)}${which}`);
    }
    return stored;
  }

  /** Newest first. */
  async list(params: ListParams): Promise<ResultsPage> {
    const page = await this.findings.list(toListQuery(params));
    return { items: page.items, nextPageToken: page.next === null ? null : encodePageToken(page.next) };
  }

  /**
   * Everything stored after the cursor, then new results as they are stored, until the signal
   * aborts. Without a cursor, only results stored from now on.
   */
  async watch(
    cursor: string,
    deliver: (record: StoredFindings) => Promise<void> | void,
    signal: AbortSignal,
  ): Promise<void> {
    const after = decodeWatchCursor(cursor) ?? (await this.feed.latestSeq());
    await followFindings(this.feed, after, deliver, { signal, pollMs: this.options.watchPollMs });
  }
}
