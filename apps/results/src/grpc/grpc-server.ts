import { type BeforeApplicationShutdown, Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { PROTO_FILES, protoRoot, ResultsServiceService } from '@thorax/contracts';
import { LOGGER, type Logger } from '@thorax/observability';
import { ResultsGrpcController } from '../findings/results.grpc-controller';

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (tests); `port` tells which after start. */
  port: number;
  /** How long shutdown waits for in-flight calls before cancelling them, ms. */
  shutdownGraceMs?: number;
}

export const GRPC_SERVER_OPTIONS = Symbol('thorax.results.grpc-server-options');

/**
 * The service's gRPC server: thorax.v1.ResultsService plus server reflection (v1 and v1alpha)
 * over the .proto files of the contract. Starts once the app is up; on shutdown it ends open
 * watch streams, lets unary calls finish, then closes.
 */
@Injectable()
export class GrpcServer implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private server: Server | null = null;
  private boundPort = 0;

  constructor(
    @Inject(GRPC_SERVER_OPTIONS) private readonly options: GrpcServerOptions,
    private readonly results: ResultsGrpcController,
    @Inject(LOGGER) private readonly log: Logger,
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
    const server = new Server();
    server.addService(ResultsServiceService, this.results.service);
    reflectionService().addToServer(server);
    const address = `${this.options.host}:${this.options.port}`;
    this.boundPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port))),
    );
    this.server = server;
    this.log.info({ grpcPort: this.boundPort, services: ['thorax.v1.ResultsService', 'grpc.reflection.v1.ServerReflection'] }, 'gRPC server listening');
    return this.boundPort;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
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

/** Reflection over the contract's own .proto files (the generated TS carries no descriptors). */
function reflectionService(): ReflectionService {
  const definition = loadSync(PROTO_FILES.results, {
    includeDirs: [protoRoot()],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return new ReflectionService(definition);
}
