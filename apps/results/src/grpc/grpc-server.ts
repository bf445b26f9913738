import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap, Optional } from '@nestjs/common';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { fileDescriptorSet, ResultsServiceService } from '@thorax/contracts';
import type { TokenVerifier } from '@thorax/auth';
import type { ServerTls } from '@thorax/config';
import { DescriptorReflection, grpcAuthInterceptor, grpcMetricsInterceptor, LOGGER, type Logger, ThoraxMetrics } from '@thorax/observability';
import { ResultsGrpcController } from './results.grpc-controller';
import { STORE_HEALTH, type StoreHealth } from '../store/results-store.port';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (tests); `port` tells which after start. */
  port: number;
  /** How long shutdown waits for in-flight calls before cancelling them, ms. */
  shutdownGraceMs?: number;
  /** How often grpc.health.v1 re-checks the store, ms. */
  healthCheckMs?: number;
  /** TLS server credentials (TLS_CERT_FILE/TLS_KEY_FILE); null or absent: plaintext. */
  tls?: ServerTls | null;
  /** Bearer-token check on thorax.v1.ResultsService (health and reflection stay open); null or absent: off. */
  auth?: TokenVerifier | null;
}

/** The service name grpc.health.v1 reports besides the server as a whole (""). */
export const RESULTS_SERVICE_NAME = 'thorax.v1.ResultsService';
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

export const GRPC_SERVER_OPTIONS = Symbol('thorax.results.grpc-server-options');

/**
 * The service's gRPC server: thorax.v1.ResultsService, the standard grpc.health.v1 service
 * (SERVING while the store answers, NOT_SERVING otherwise and from shutdown on) and server
 * reflection (v1 and v1alpha) over the compiled descriptors of all three, well-known types
 * included (see DescriptorReflection). With TLS configured it serves TLS
 * only; with auth configured ResultsService calls need `authorization: Bearer <jwt>` metadata
 * granting the read scope. Starts once the app is up; on shutdown it ends open watch streams,
 * lets unary calls finish, then closes.
 */
@Injectable()
export class GrpcServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private server: Server | null = null;
  private boundPort = 0;
  private readonly health = new HealthImplementation({ '': 'NOT_SERVING', [RESULTS_SERVICE_NAME]: 'NOT_SERVING' });
  private healthTimer: NodeJS.Timeout | null = null;

  constructor(
    @Inject(GRPC_SERVER_OPTIONS) private readonly options: GrpcServerOptions,
    private readonly results: ResultsGrpcController,
    @Inject(LOGGER) private readonly log: Logger,
    @Inject(STORE_HEALTH) private readonly store: StoreHealth,
    @Optional() private readonly metrics?: ThoraxMetrics,
  ) {}

  get port(): number {
    return this.boundPort;
  }

  async onApplicationBootstrap(): Promise<void> {
    await this.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    await this.stop();
  }

  async start(): Promise<number> {
    // Request rate, errors and duration per method (thorax_grpc_server_*); the auth interceptor
    // comes last (outermost), so its refusals pass through the metrics interceptor and are counted.
    const interceptors = [
      ...(this.metrics ? [grpcMetricsInterceptor(this.metrics)] : []),
      ...(this.options.auth ? [grpcAuthInterceptor(this.options.auth, this.log)] : []),
    ];
    const server = new Server({ interceptors });
    server.addService(ResultsServiceService, this.results.service);
    this.health.addToServer(server);
    new DescriptorReflection(fileDescriptorSet(), [RESULTS_SERVICE_NAME, HEALTH_SERVICE_NAME]).addToServer(server);
    const address = `${this.options.host}:${this.options.port}`;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, credentialsOf(this.options.tls ?? null), (error, port) => (error ? reject(error) : resolve(port))),
    );
    this.server = server;
    await this.checkHealth();
    this.healthTimer = setInterval(() => void this.checkHealth(), this.options.healthCheckMs ?? 5000);
    this.healthTimer.unref();
    this.log.info(
      {
        grpcPort: this.boundPort,
        tls: Boolean(this.options.tls),
        auth: this.options.auth ? 'bearer-jwt' : 'off',
        services: [RESULTS_SERVICE_NAME, HEALTH_SERVICE_NAME, 'grpc.reflection.v1.ServerReflection'],
      },
      'gRPC server listening',
    );
    return this.boundPort;
  }

  private async checkHealth(): Promise<void> {
    let status: ServingStatus = 'SERVING';
    try {
      await this.store.ping();
    } catch {
      status = 'NOT_SERVING';
    }
    // Shutdown may have begun while the ping was in flight: it has the last word.
    if (this.server) this.setHealth(status);
  }

  private setHealth(status: ServingStatus): void {
    this.health.setStatus('', status);
    this.health.setStatus(RESULTS_SERVICE_NAME, status);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
    this.setHealth('NOT_SERVING');
    this.results.endWatches();
    const grace = this.options.shutdownGraceMs ?? 5000;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, grace);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    this.log.info('gRPC server stopped');
  }
}

function credentialsOf(tls: ServerTls | null): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false);
}
