import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap, Optional } from '@nestjs/common';
import { Metadata, type sendUnaryData, Server, ServerCredentials, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { TokenVerifier } from '@thorax/auth';
import type { ServerTls } from '@thorax/config';
import {
  type FindingsEvent,
  type FindingsResult,
  FindingsStatus,
  fileDescriptorSet,
  IngestServiceService,
  type PredictRequest,
  type PredictResponse,
  Priority,
  type SubmitStudyRequest,
  type SubmitStudyResponse,
  toModelRef,
  HEADERS,
} from '@thorax/contracts';
import {
  defaultGrpcAccess,
  DescriptorReflection,
  grpcAuthInterceptor,
  grpcMetricsInterceptor,
  LOGGER,
  type Logger,
  ThoraxMetrics,
} from '@thorax/observability';
import { EdgeAudit } from '../audit/edge-audit';
import { EdgeError, grpcStatusOf, httpStatusOf, isEdgeCode, toEdgeError } from './edge-error';
import type { Submission } from './instance-submitter';
import { FindingsWaiter } from './findings-waiter';
import { PredictService } from './predict.service';

export interface IngestGrpcOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  tls: ServerTls | null;
  auth: TokenVerifier | null;
  /** Largest request message, bytes (the image travels inside it). */
  maxMessageBytes: number;
}

export const INGEST_GRPC_OPTIONS = Symbol('thorax.ingest.grpc-options');
export const INGEST_SERVICE_NAME = 'thorax.v1.IngestService';
const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

/**
 * gRPC `thorax.v1.IngestService` on GRPC_PORT (50052): SubmitStudy answers with the id once Kafka
 * acknowledged the record, Predict with the image's findings once the pipeline produced them;
 * grpc.health.v1 (SERVING while the findings topic is followed) and reflection stay open. With
 * auth configured, IngestService calls need a bearer token with the admin scope (they write). A
 * refused image or an error findings event is a gRPC status (docs/error-codes.md) with the code in
 * the `thorax-error-code` trailer.
 */
@Injectable()
export class IngestGrpcServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private server: Server | null = null;
  private boundPort = 0;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [INGEST_SERVICE_NAME]: 'NOT_SERVING' });
  private healthTimer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(INGEST_GRPC_OPTIONS) private readonly options: IngestGrpcOptions,
    private readonly edge: PredictService,
    private readonly waiter: FindingsWaiter,
    @Inject(LOGGER) private readonly log: Logger,
    private readonly audit: EdgeAudit,
    @Optional() private readonly metrics?: ThoraxMetrics,
  ) {}

  get port(): number {
    return this.boundPort;
  }

  async onApplicationBootstrap(): Promise<void> {
    const accessOf = (path: string) => (path.startsWith(`/${INGEST_SERVICE_NAME}/`) ? 'admin' : defaultGrpcAccess(path));
    const interceptors = [
      ...(this.metrics ? [grpcMetricsInterceptor(this.metrics)] : []),
      ...(this.options.auth ? [grpcAuthInterceptor(this.options.auth, this.log, accessOf)] : []),
    ];
    const server = new Server({
      interceptors,
      'grpc.max_receive_message_length': this.options.maxMessageBytes,
    });
    server.addService(IngestServiceService, {
      submitStudy: (call: ServerUnaryCall<SubmitStudyRequest, SubmitStudyResponse>, callback: sendUnaryData<SubmitStudyResponse>) =>
        void this.audited(call, 'SubmitStudy', () => this.submitStudy(call.request)).then((r) => callback(null, r), (e: unknown) => callback(this.failure(e))),
      predict: (call: ServerUnaryCall<PredictRequest, PredictResponse>, callback: sendUnaryData<PredictResponse>) =>
        void this.audited(call, 'Predict', () => this.predict(call.request)).then((r) => callback(null, r), (e: unknown) => callback(this.failure(e))),
    });
    this.health.addToServer(server);
    new DescriptorReflection(fileDescriptorSet(), [INGEST_SERVICE_NAME, HEALTH_SERVICE_NAME]).addToServer(server);
    const credentials = this.options.tls
      ? ServerCredentials.createSsl(null, [{ cert_chain: this.options.tls.cert, private_key: this.options.tls.key }], false)
      : ServerCredentials.createInsecure();
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${this.options.host}:${this.options.port}`, credentials, (error, port) => (error ? reject(error) : resolve(port))),
    );
    this.server = server;
    this.checkHealth();
    this.healthTimer = setInterval(() => this.checkHealth(), 1000);
    this.healthTimer.unref();
    this.log.info(
      { grpcPort: this.boundPort, tls: Boolean(this.options.tls), auth: this.options.auth ? 'bearer-jwt' : 'off', services: [INGEST_SERVICE_NAME, HEALTH_SERVICE_NAME] },
      'gRPC server listening',
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.setHealth('NOT_SERVING');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 5000);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private checkHealth(): void {
    if (this.server) this.setHealth(this.waiter.ready ? 'SERVING' : 'NOT_SERVING');
  }

  private setHealth(status: ServingStatus): void {
    this.health.setStatus('', status);
    this.health.setStatus(INGEST_SERVICE_NAME, status);
  }

  private async submitStudy(request: SubmitStudyRequest): Promise<SubmitStudyResponse> {
    const submitted = await this.edge.submit(submissionOf(request));
    return { id: submitted.id };
  }

  private async predict(request: PredictRequest): Promise<PredictResponse> {
    if (!request.study) throw new EdgeError('INVALID_ARGUMENT', 'study is required');
    const { event } = await this.edge.predict(submissionOf(request.study), request.timeoutMs || undefined);
    if (event.status !== 'ok') {
      const code = event.error?.code ?? 'INTERNAL_ERROR';
      throw new PipelineVerdict(isEdgeCode(code) ? code : 'INTERNAL_ERROR', event.error?.message ?? 'the image was not analysed');
    }
    return { result: toFindingsResult(event) };
  }

  /** One audit line per call and the edge instance counter, as the HTTP edge does. */
  private async audited<T>(call: ServerUnaryCall<unknown, unknown>, method: string, work: () => Promise<T>): Promise<T> {
    const startedAt = new Date();
    let stored = false;
    let status = 200;
    try {
      const value = await work();
      stored = true;
      return value;
    } catch (error) {
      const edgeError = toEdgeError(error);
      status = httpStatusOf(edgeError.code);
      // A timeout or an error event: the image reached Kafka all the same.
      stored = edgeError.code === 'PREDICT_TIMEOUT' || error instanceof EdgeError && isPipelineVerdict(error);
      throw error;
    } finally {
      this.audit.instance('grpc', stored ? 'stored' : 'failed');
      this.audit.request({
        edge: 'grpc',
        route: `/${INGEST_SERVICE_NAME}/${method}`,
        client: call.getPeer(),
        subject: null,
        startedAt,
        endedAt: new Date(),
        instancesStored: stored ? 1 : 0,
        instancesFailed: stored ? 0 : 1,
        status,
        outcome: stored ? 'stored' : 'failed',
      });
    }
  }

  private failure(error: unknown): Partial<ServiceError> {
    const edgeError = toEdgeError(error);
    const code = grpcStatusOf(edgeError.code);
    if (edgeError.code === 'INTERNAL_ERROR') this.log.error({ err: error }, 'ingest gRPC call failed');
    const metadata = new Metadata();
    metadata.set('thorax-error-code', edgeError.code);
    return { code, details: `${edgeError.code}: ${edgeError.message}`, metadata };
  }
}

/** The pipeline's error event for a predicted image, as the call's status. */
class PipelineVerdict extends EdgeError {}

function isPipelineVerdict(error: EdgeError): boolean {
  return error instanceof PipelineVerdict;
}

function submissionOf(request: SubmitStudyRequest): Submission {
  if (request.data.length === 0) throw new EdgeError('EMPTY_PAYLOAD', 'data is empty');
  const headers: Record<string, string> = {};
  const study = request.study;
  if (study?.studyUid) headers[HEADERS.studyUid] = study.studyUid;
  if (study?.accession) headers[HEADERS.accession] = study.accession;
  if (study?.patientId) headers[HEADERS.patientId] = study.patientId;
  if (request.priority === Priority.PRIORITY_STAT) headers[HEADERS.priority] = 'stat';
  if (request.priority === Priority.PRIORITY_ROUTINE) headers[HEADERS.priority] = 'routine';
  return {
    ...(request.id ? { id: request.id } : {}),
    ...(request.contentType ? { contentType: request.contentType } : {}),
    body: Buffer.from(request.data.buffer, request.data.byteOffset, request.data.byteLength),
    headers,
    source: 'grpc',
  };
}

/** A findings event as the gRPC FindingsResult (thorax/v1/findings.proto); not stored yet, so no stored_at. */
export function toFindingsResult(event: FindingsEvent): FindingsResult {
  return {
    id: event.id,
    status: event.status === 'ok' ? FindingsStatus.FINDINGS_STATUS_OK : FindingsStatus.FINDINGS_STATUS_ERROR,
    study: {
      studyUid: event.study.studyUid ?? '',
      seriesUid: event.study.seriesUid ?? '',
      sopInstanceUid: '',
      accession: event.study.accession ?? '',
      patientId: event.study.patientId ?? '',
      viewPosition: event.study.viewPosition ?? '',
      modality: '',
      bodyPart: '',
    },
    model: event.model ? toModelRef(event.model) : undefined,
    findings: event.findings.map((f) => ({ label: f.label, probability: f.probability, threshold: f.threshold, positive: f.positive })),
    positives: [...event.positives],
    timing: { receivedAt: new Date(event.timing.receivedAt), completedAt: new Date(event.timing.completedAt), latencyMs: event.timing.latencyMs },
    error: event.error ? { code: event.error.code, stage: event.error.stage, message: event.error.message } : undefined,
    storedAt: undefined,
  };
}
