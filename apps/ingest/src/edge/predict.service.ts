import { Inject, Injectable } from '@nestjs/common';
import type { FindingsEvent } from '@thorax/contracts';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { EdgeError } from './edge-error';
import { FindingsWaiter } from './findings-waiter';
import { InstanceSubmitter, type Submission, type Submitted } from './instance-submitter';

/** Longest wait a caller may ask for, ms (a caller's own timeout is capped by it). */
const MAX_TIMEOUT_MS = 300_000;

/**
 * The HTTP and gRPC edges' two operations: submit an image (the answer once Kafka acknowledged
 * it) and predict (submit, then wait for that image's findings event on thorax.findings.v1).
 */
@Injectable()
export class PredictService {
  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    private readonly submitter: InstanceSubmitter,
    private readonly waiter: FindingsWaiter,
  ) {}

  submit(s: Submission): Promise<Submitted> {
    return this.submitter.submit(s);
  }

  /**
   * Submits the image and resolves with its findings event (status ok or error). Rejects with an
   * EdgeError: PREDICT_TIMEOUT after `timeoutMs` (default INGEST_PREDICT_TIMEOUT_MS), TOO_MANY_REQUESTS
   * or UNAVAILABLE before submitting, or the code of a refused upload.
   */
  async predict(s: Submission, timeoutMs?: number): Promise<{ submitted: Submitted; event: FindingsEvent }> {
    const timeout = Math.min(timeoutMs && timeoutMs > 0 ? timeoutMs : this.config.INGEST_PREDICT_TIMEOUT_MS, MAX_TIMEOUT_MS);
    if (!this.waiter.ready) throw new EdgeError('UNAVAILABLE', 'predict is not available yet: the findings topic is not followed');
    const prepared = await this.submitter.prepare(s);
    const wait = this.waiter.wait(prepared.id, timeout);
    try {
      const submitted = await this.submitter.submit(prepared);
      return { submitted, event: await wait.result };
    } catch (error) {
      wait.cancel();
      throw error;
    }
  }
}
