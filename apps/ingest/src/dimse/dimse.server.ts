import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { Implementation, log as dimseLog, type Scp, Server } from 'dcmjs-dimse';
import type { Server as NetServer } from 'node:net';
import { LOGGER, type Logger } from '@thorax/observability';
import { EdgeAudit } from '../audit/edge-audit';
import { INGEST_CONFIG, type IngestConfig } from '../config';
import { InstanceSubmitter } from '../edge/instance-submitter';
import { intakeOptions } from '../studies/study-intake.service';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION } from './part10';
import { storageScpClass, type StorageScpContext } from './storage-scp';

/** How long a shutdown waits for C-STORE answers in progress before it cuts the associations. */
const DRAIN_MS = 10_000;

/**
 * The DIMSE listener of ingest (INGEST_DIMSE_*): starts with the application, stops accepting
 * associations on shutdown and waits for the stores in progress to be answered.
 */
@Injectable()
export class DimseServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private server: Server | null = null;
  private readonly ctx: StorageScpContext;

  constructor(
    @Inject(INGEST_CONFIG) private readonly config: IngestConfig,
    submitter: InstanceSubmitter,
    audit: EdgeAudit,
    @Inject(LOGGER) private readonly log: Logger,
  ) {
    this.ctx = {
      options: {
        aeTitle: config.INGEST_DIMSE_AE_TITLE,
        allowedCallingAeTitles: config.INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES,
        maxAssociations: config.INGEST_DIMSE_MAX_ASSOCIATIONS,
        maxInstanceBytes: config.INGEST_DIMSE_MAX_INSTANCE_BYTES,
        maxPduBytes: config.INGEST_DIMSE_MAX_PDU_BYTES,
      },
      intake: intakeOptions(config),
      submitter,
      audit,
      log: log.child({ edge: 'dimse' }),
      live: new Set<Scp>(),
      inFlight: new Set<Promise<unknown>>(),
    };
  }

  /** The bound TCP port (0 until listening). */
  get port(): number {
    const address = this.netServer()?.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.INGEST_DIMSE_ENABLED) {
      this.log.info({ edge: 'dimse' }, 'DIMSE listener off (INGEST_DIMSE_ENABLED=false)');
      return;
    }
    // The library logs every PDU to the console by default; the audit trail and our lines replace it.
    dimseLog.setLevel('silent');
    Implementation.setImplementationClassUid(IMPLEMENTATION_CLASS_UID);
    Implementation.setImplementationVersion(IMPLEMENTATION_VERSION);
    Implementation.setMaxPduLength(this.config.INGEST_DIMSE_MAX_PDU_BYTES);
    const server = new Server(storageScpClass(this.ctx));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error) => reject(new Error(`DIMSE listener on port ${this.config.INGEST_DIMSE_PORT} failed: ${error.message}`));
      server.once('networkError', failed);
      server.once('listening', () => {
        server.off('networkError', failed);
        resolve();
      });
      server.listen(this.config.INGEST_DIMSE_PORT, {
        associationTimeout: this.config.INGEST_DIMSE_ASSOCIATION_TIMEOUT_MS,
        pduTimeout: this.config.INGEST_DIMSE_IDLE_TIMEOUT_MS,
      });
    });
    server.on('networkError', (error: Error) => this.log.warn({ edge: 'dimse', err: { message: error.message } }, 'DIMSE listener error'));
    this.log.info(
      {
        edge: 'dimse',
        port: this.port,
        aeTitle: this.config.INGEST_DIMSE_AE_TITLE,
        allowedCallingAeTitles: this.config.INGEST_DIMSE_ALLOWED_CALLING_AE_TITLES ?? '*',
        maxPduBytes: this.config.INGEST_DIMSE_MAX_PDU_BYTES,
      },
      'DIMSE listener up (C-ECHO, C-STORE)',
    );
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    this.netServer(server)?.close();
    const deadline = Date.now() + DRAIN_MS;
    while (this.ctx.inFlight.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.allSettled([...this.ctx.inFlight]), new Promise((r) => setTimeout(r, 250))]);
    }
    server.close();
  }

  private netServer(server: Server | null = this.server): NetServer | undefined {
    return (server as unknown as { server?: NetServer } | null)?.server;
  }
}
