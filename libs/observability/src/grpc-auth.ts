import {
  Metadata,
  type ServerInterceptingCallInterface,
  ServerInterceptingCall,
  type ServerInterceptor,
  type ServerMethodDefinition,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import type { AuthFailure, TokenVerifier } from '@thorax/auth';
import type { Logger } from './logger';
import type { RouteAccess } from './api-auth';

/** Services every caller may use: health checks (Kubernetes gRPC probes) and server reflection. */
const PUBLIC_SERVICES = /^\/grpc\.(health\.v1\.Health|reflection\.v1(alpha)?\.ServerReflection)\//;

/** Default: health and reflection public, every other method needs read. */
export function defaultGrpcAccess(path: string): RouteAccess {
  return PUBLIC_SERVICES.test(path) ? 'public' : 'read';
}

export function grpcStatusOf(failure: AuthFailure): GrpcStatus {
  return failure.status === 401 ? GrpcStatus.UNAUTHENTICATED : failure.status === 403 ? GrpcStatus.PERMISSION_DENIED : GrpcStatus.UNAVAILABLE;
}

/**
 * A grpc-js server interceptor that requires `authorization: Bearer <jwt>` metadata granting the
 * level `accessOf(method path)` names: UNAUTHENTICATED without a valid token, PERMISSION_DENIED
 * without the scope, UNAVAILABLE when the signing keys cannot be fetched. The handler sees no
 * message before the token is verified. Put it after the metrics interceptor so refusals are
 * counted: `interceptors: [grpcMetricsInterceptor(m), grpcAuthInterceptor(v, log)]`.
 */
export function grpcAuthInterceptor(verifier: TokenVerifier, log: Logger, accessOf: (path: string) => RouteAccess = defaultGrpcAccess): ServerInterceptor {
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const access = accessOf(method.path);
    if (access === 'public') return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const values = metadata.get('authorization');
            // Two authorization entries are ambiguous: treated as a malformed credential.
            const header = values.length === 0 ? undefined : values.length === 1 && typeof values[0] === 'string' ? values[0] : 'Bearer';
            verifier.check(header, access).then(
              (result) => {
                if (result.ok) {
                  log.debug({ sub: result.principal.subject, rpc: method.path, access, outcome: 'allowed' }, 'gRPC call authorized');
                  nextMetadata(metadata);
                  return;
                }
                const { failure } = result;
                const fields = { sub: failure.details.subject ?? null, rpc: method.path, access, outcome: failure.code, reason: failure.details.reason ?? null };
                if (failure.code === 'keys_unavailable') log.warn({ ...fields, err: failure.details.cause }, 'gRPC call refused: token signing keys unavailable');
                else log.info(fields, 'gRPC call refused');
                call.sendStatus({ code: grpcStatusOf(failure), details: failure.message, metadata: new Metadata() });
              },
              (error: unknown) => {
                log.error({ err: error, rpc: method.path }, 'gRPC authorization failed');
                call.sendStatus({ code: GrpcStatus.INTERNAL, details: 'internal error', metadata: new Metadata() });
              },
            );
          },
        }),
    });
  };
}
