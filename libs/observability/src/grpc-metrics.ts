import {
  type ServerInterceptingCallInterface,
  ServerInterceptingCall,
  type ServerInterceptor,
  type ServerMethodDefinition,
  status as GrpcStatus,
} from '@grpc/grpc-js';
import { ThoraxMetrics } from './metrics';

type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/**
 * A grpc-js server interceptor that counts, times and tracks in-flight calls of every method the
 * server serves: `new Server({ interceptors: [grpcMetricsInterceptor(metrics)] })`. grpc-js runs
 * interceptors only for registered methods, so the method labels are bounded by the services the
 * server adds. A call ends at its status or, when the client cancels first, as CANCELLED.
 */
export function grpcMetricsInterceptor(metrics: ThoraxMetrics): ServerInterceptor {
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const labels = { ...splitPath(method.path), grpc_type: grpcType(method) };
    const started = process.hrtime.bigint();
    metrics.grpcInFlight.inc(labels);
    let ended = false;
    const end = (code: number) => {
      if (ended) return;
      ended = true;
      metrics.grpcInFlight.dec(labels);
      metrics.grpcHandled.inc({ ...labels, grpc_code: statusName(code) });
      metrics.grpcDuration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
    };
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => end(GrpcStatus.CANCELLED) }),
      sendStatus: (status, next) => {
        end(status.code ?? GrpcStatus.UNKNOWN);
        next(status);
      },
    });
  };
}

/** `/thorax.v1.ResultsService/GetFindings` → service and method labels. */
export function splitPath(path: string): { grpc_service: string; grpc_method: string } {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return match ? { grpc_service: match[1] as string, grpc_method: match[2] as string } : { grpc_service: 'unknown', grpc_method: 'unknown' };
}

function grpcType(method: ServerMethodDefinition<unknown, unknown>): GrpcType {
  if (method.requestStream) return method.responseStream ? 'bidi_stream' : 'client_stream';
  return method.responseStream ? 'server_stream' : 'unary';
}

const STATUS_NAMES = new Map<number, string>(
  Object.entries(GrpcStatus)
    .filter((entry): entry is [string, number] => typeof entry[1] === 'number')
    .map(([name, code]) => [code, name]),
);

/** OK, NOT_FOUND, … (a closed set; an unknown number is UNKNOWN). */
export function statusName(code: number): string {
  return STATUS_NAMES.get(code) ?? 'UNKNOWN';
}
