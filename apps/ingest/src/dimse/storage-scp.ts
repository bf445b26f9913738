import { Dataset, Scp, constants, responses, type association, type requests } from 'dcmjs-dimse';
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { IntakeOptions } from '@thorax/imaging';
import type { Logger } from '@thorax/observability';
import type { EdgeAudit } from '../audit/edge-audit';
import type { InstanceSubmitter } from '../edge/instance-submitter';
import { checkInstance, FAILURE, InstanceRefused, needsWholeInstance, submitFailure } from './instance-check';
import { InstanceSpool, SPOOL_MEMORY_BYTES } from './instance-spool';
import { part10Header } from './part10';
import { pduGuard } from './pdu-guard';
import {
  ACCEPTED_TRANSFER_SYNTAXES,
  chooseTransferSyntax,
  isAcceptedStorageClass,
  VERIFICATION_SOP_CLASS,
  VERIFICATION_TRANSFER_SYNTAXES,
} from './storage-classes';

const { PresentationContextResult, RejectReason, RejectResult, RejectSource, Status } = constants;

export interface StorageScpOptions {
  aeTitle: string;
  /** null: any calling AE title. */
  allowedCallingAeTitles: readonly string[] | null;
  maxAssociations: number;
  maxInstanceBytes: number;
  /** The largest PDU this SCP receives (announced in the A-ASSOCIATE-AC, enforced on every PDU). */
  maxPduBytes: number;
  /** Where instances above 16 MiB wait (default: the OS temporary directory). */
  spoolDir?: string;
}

/** What every association of the SCP shares: its settings, its collaborators, the live associations. */
export interface StorageScpContext {
  options: StorageScpOptions;
  intake: IntakeOptions;
  submitter: Pick<InstanceSubmitter, 'submit'>;
  audit: EdgeAudit;
  log: Logger;
  /** Associations in progress (for the limit and for a draining shutdown). */
  live: Set<Scp>;
  /** Stores whose answer is still being worked out (shutdown waits for them). */
  inFlight: Set<Promise<unknown>>;
}

type PresentationContext = association.PresentationContext;

/**
 * A C-ECHO and C-STORE SCP class for dcmjs-dimse's Server, bound to `ctx`. Negotiation accepts
 * Verification and the chest radiograph storage classes in the syntaxes the decoder reads, and
 * refuses the rest per presentation context; C-STORE answers success only once the instance's
 * record is acknowledged by Kafka (InstanceSubmitter), so a sender retries anything not answered.
 */
export function storageScpClass(ctx: StorageScpContext): typeof Scp {
  return class ThoraxStorageScp extends Scp {
    private readonly startedAt = new Date();
    private readonly peer: string;
    private callingAeTitle = '';
    private calledAeTitle = '';
    private stored = 0;
    private failed = 0;
    private echoes = 0;
    private outcome: string | null = null;
    private rejectReason: string | undefined;
    private readonly spools = new WeakMap<object, InstanceSpool>();
    private ended = false;

    constructor(socket: Socket, opts?: ConstructorParameters<typeof Scp>[1]) {
      super(socket, opts);
      this.peer = `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? 0}`;
      ctx.live.add(this);
      socket.on(
        'data',
        pduGuard(ctx.options.maxPduBytes, (reason) => {
          this.outcome ??= 'aborted';
          ctx.log.warn({ peer: this.peer, callingAeTitle: this.callingAeTitle, reason }, 'DICOM association cut: oversized PDU');
          socket.destroy();
        }),
      );
      this.on('networkError', (error: Error) => {
        if (this.outcome === null) this.outcome = /timeout/i.test(error.message) ? 'timed-out' : 'network-error';
        ctx.log.warn({ peer: this.peer, callingAeTitle: this.callingAeTitle, err: { message: error.message } }, 'DICOM association network error');
      });
      this.on('close', () => this.end());
    }

    override associationRequested(assoc: association.Association): void {
      this.callingAeTitle = assoc.getCallingAeTitle().trim();
      this.calledAeTitle = assoc.getCalledAeTitle().trim();
      const { options } = ctx;
      if (ctx.live.size > options.maxAssociations) {
        return this.reject(RejectResult.Transient, RejectSource.ServiceProviderPresentation, RejectReason.LocalLimitExceeded, 'local-limit-exceeded');
      }
      if (this.calledAeTitle !== options.aeTitle) {
        return this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CalledAeNotRecognized, 'called-ae-not-recognized');
      }
      if (options.allowedCallingAeTitles !== null && !options.allowedCallingAeTitles.includes(this.callingAeTitle)) {
        return this.reject(RejectResult.Permanent, RejectSource.ServiceUser, RejectReason.CallingAeNotRecognized, 'calling-ae-not-recognized');
      }
      for (const { context } of assoc.getPresentationContexts()) negotiate(context);
      // The A-ASSOCIATE-AC announces what this SCP receives (the library would take the peer's
      // own maximum, 0 = unlimited included).
      assoc.setMaxPduLength(options.maxPduBytes);
      this.sendAssociationAccept();
    }

    override associationReleaseRequested(): void {
      this.outcome ??= 'released';
      this.sendAssociationReleaseResponse();
    }

    override abort(): void {
      this.outcome ??= 'aborted';
      // After an A-ABORT nothing more may come on this connection (PS3.8 7.3.1).
      this.connection().destroy();
    }

    override cEchoRequest(request: requests.CEchoRequest, callback: (response: responses.CEchoResponse) => void): void {
      this.echoes += 1;
      const response = responses.CEchoResponse.fromRequest(request);
      response.setStatus(Status.Success);
      callback(response);
    }

    override createStoreWritableStream(): Writable {
      return new InstanceSpool({ maxBytes: ctx.options.maxInstanceBytes, ...(ctx.options.spoolDir ? { dir: ctx.options.spoolDir } : {}) });
    }

    override createDatasetFromStoreWritableStream(writable: Writable, context: PresentationContext, callback: (dataset: Dataset) => void): void {
      // The dataset stays in the spool: parsing it into dcmjs objects would only cost memory.
      const dataset = new Dataset({}, context.getAcceptedTransferSyntaxUid());
      this.spools.set(dataset, writable as InstanceSpool);
      if (writable.writableFinished) callback(dataset);
      else writable.once('finish', () => callback(dataset));
    }

    override cStoreRequest(request: requests.CStoreRequest, callback: (response: responses.CStoreResponse) => void): void {
      const work = this.store(request).then((status) => {
        const response = responses.CStoreResponse.fromRequest(request);
        response.setStatus(status.code);
        if (status.comment) response.setErrorComment(status.comment.slice(0, 64));
        callback(response);
      });
      ctx.inFlight.add(work);
      void work.finally(() => ctx.inFlight.delete(work));
    }

    private async store(request: requests.CStoreRequest): Promise<{ code: number; comment?: string }> {
      const dataset = request.getDataset();
      const spool = dataset ? this.spools.get(dataset) : undefined;
      try {
        if (!spool || !dataset) throw new InstanceRefused(FAILURE.cannotUnderstand, 'C-STORE without a dataset');
        if (spool.overflowed) throw new InstanceRefused(FAILURE.outOfResources, `instance larger than ${ctx.options.maxInstanceBytes} bytes`);
        const transferSyntaxUid = dataset.getTransferSyntaxUid();
        const sopClassUid = request.getAffectedSopClassUid().replace(/\0/g, '').trim();
        const sopInstanceUid = request.getAffectedSopInstanceUid().replace(/\0/g, '').trim();
        if (!isAcceptedStorageClass(sopClassUid)) throw new InstanceRefused(FAILURE.sopClassNotSupported, `SOP Class ${sopClassUid} is not accepted`);
        const head = part10Header({ sopClassUid, sopInstanceUid, transferSyntaxUid, sourceAeTitle: this.callingAeTitle });
        const body = needsWholeInstance(transferSyntaxUid) ? await spool.whole() : await spool.prefix(SPOOL_MEMORY_BYTES);
        const checked = checkInstance(Buffer.concat([head, body]), ctx.intake, { sopClassUid, sopInstanceUid });
        await ctx.submitter.submit({ id: checked.sopInstanceUid, contentType: 'application/dicom', body: spool.body(head), source: 'dimse' });
        this.stored += 1;
        ctx.audit.instance('dimse', 'stored');
        return { code: Status.Success };
      } catch (error) {
        const refused = submitFailure(error);
        if (!(error instanceof InstanceRefused)) ctx.log.warn({ peer: this.peer, err: error }, 'C-STORE not handed on');
        this.failed += 1;
        ctx.audit.instance('dimse', 'failed');
        return { code: refused.status, comment: refused.reason };
      } finally {
        await spool?.discard();
      }
    }

    private reject(result: number, source: number, reason: number, why: string): void {
      this.outcome = 'rejected';
      this.rejectReason = why;
      this.sendAssociationReject(result, source, reason);
      // The SCU closes on A-ASSOCIATE-RJ; one that does not is cut off.
      setTimeout(() => this.connection().destroy(), 2_000).unref();
    }

    /** The library keeps the TCP socket in `socket` (not typed). */
    private connection(): Socket {
      return (this as unknown as { socket: Socket }).socket;
    }

    private end(): void {
      if (this.ended) return;
      this.ended = true;
      ctx.live.delete(this);
      ctx.audit.association({
        callingAeTitle: this.callingAeTitle,
        calledAeTitle: this.calledAeTitle,
        peer: this.peer,
        startedAt: this.startedAt,
        endedAt: new Date(),
        instancesStored: this.stored,
        instancesFailed: this.failed,
        echoes: this.echoes,
        outcome: this.outcome ?? 'closed',
        ...(this.rejectReason ? { rejectReason: this.rejectReason } : {}),
      });
    }
  };
}

/** Accepts or refuses one proposed presentation context (PS3.8 9.3.3.2 result codes). */
function negotiate(context: PresentationContext): void {
  const abstract = context.getAbstractSyntaxUid().replace(/\0/g, '').trim();
  const accepted =
    abstract === VERIFICATION_SOP_CLASS ? VERIFICATION_TRANSFER_SYNTAXES : isAcceptedStorageClass(abstract) ? ACCEPTED_TRANSFER_SYNTAXES : null;
  if (accepted === null) return context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
  const chosen = chooseTransferSyntax(context.getTransferSyntaxUids(), accepted);
  if (chosen === undefined) return context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
  context.setResult(PresentationContextResult.Accept, chosen);
}
