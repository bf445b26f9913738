import {
  type Client,
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import { once } from 'node:events';
import { grpcMetricsInterceptor, splitPath, statusName } from './grpc-metrics';
import { parseSamples } from '@thorax/testing';
import { ThoraxMetrics } from './metrics';

type Msg = { id: string };
const json = {
  requestSerialize: (v: Msg) => Buffer.from(JSON.stringify(v)),
  requestDeserialize: (b: Buffer) => JSON.parse(b.toString()) as Msg,
  responseSerialize: (v: Msg) => Buffer.from(JSON.stringify(v)),
  responseDeserialize: (b: Buffer) => JSON.parse(b.toString()) as Msg,
};
const definition = {
  Get: { path: '/thorax.test.Probe/Get', requestStream: false, responseStream: false, ...json },
  Watch: { path: '/thorax.test.Probe/Watch', requestStream: false, responseStream: true, ...json },
} as unknown as ServiceDefinition;

describe('grpcMetricsInterceptor', () => {
  const metrics = new ThoraxMetrics('results');
  let server: Server;
  let client: Client & Record<string, (...args: unknown[]) => unknown>;
  const open = new Set<ServerWritableStream<Msg, Msg>>();

  beforeAll(async () => {
    server = new Server({ interceptors: [grpcMetricsInterceptor(metrics)] });
    server.addService(definition, {
      Get: (call: ServerUnaryCall<Msg, Msg>, callback: sendUnaryData<Msg>) => {
        if (call.request.id.startsWith('missing')) callback({ code: status.NOT_FOUND, details: 'no such image' });
        else callback(null, { id: call.request.id });
      },
      Watch: (call: ServerWritableStream<Msg, Msg>) => {
        if (call.request.id === 'forever') {
          open.add(call);
          call.on('cancelled', () => open.delete(call));
          return;
        }
        call.write({ id: 'a' });
        call.write({ id: 'b' });
        call.end();
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const Probe = makeGenericClientConstructor(definition as never, 'Probe');
    client = new Probe(`127.0.0.1:${port}`, credentials.createInsecure()) as never;
  });

  afterAll(async () => {
    client.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  const sample = async (name: string, labels: Record<string, string>) =>
    parseSamples(await metrics.registry.metrics()).find(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    )?.value;
  const unary = (id: string) =>
    new Promise<unknown>((resolve) => (client['Get'] as (r: Msg, cb: (e: unknown, v: unknown) => void) => void)({ id }, (e, v) => resolve(e ?? v)));

  it('counts unary calls by method and status code, and times them', async () => {
    await unary('1.2.826.0.1.3680043.8.498.1');
    await unary('1.2.826.0.1.3680043.8.498.2');
    await unary('missing-1');
    const base = { grpc_service: 'thorax.test.Probe', grpc_method: 'Get', grpc_type: 'unary' };
    expect(await sample('thorax_grpc_server_handled_total', { ...base, grpc_code: 'OK' })).toBe('2');
    expect(await sample('thorax_grpc_server_handled_total', { ...base, grpc_code: 'NOT_FOUND' })).toBe('1');
    expect(await sample('thorax_grpc_server_handling_seconds_count', base)).toBe('3');
    expect(await sample('thorax_grpc_server_in_flight', base)).toBe('0');
  });

  it('ends a server stream at its status, and a cancelled one as CANCELLED, tracking it while open', async () => {
    const base = { grpc_service: 'thorax.test.Probe', grpc_method: 'Watch', grpc_type: 'server_stream' };
    const finished = (client['Watch'] as (r: Msg) => NodeJS.EventEmitter)({ id: 'x' });
    finished.on('data', () => undefined);
    await once(finished, 'status');
    expect(await sample('thorax_grpc_server_handled_total', { ...base, grpc_code: 'OK' })).toBe('1');

    const forever = (client['Watch'] as (r: Msg) => NodeJS.EventEmitter & { cancel(): void })({ id: 'forever' });
    forever.on('error', () => undefined);
    for (let i = 0; i < 50 && open.size === 0; i += 1) await new Promise((r) => setTimeout(r, 20));
    expect(await sample('thorax_grpc_server_in_flight', base)).toBe('1');
    forever.cancel();
    for (let i = 0; i < 50 && open.size > 0; i += 1) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(await sample('thorax_grpc_server_handled_total', { ...base, grpc_code: 'CANCELLED' })).toBe('1');
    expect(await sample('thorax_grpc_server_in_flight', base)).toBe('0');
  });

  it('names paths and status codes from closed sets', () => {
    expect(splitPath('/thorax.v1.ResultsService/GetFindings')).toEqual({ grpc_service: 'thorax.v1.ResultsService', grpc_method: 'GetFindings' });
    expect(splitPath('odd')).toEqual({ grpc_service: 'unknown', grpc_method: 'unknown' });
    expect(statusName(status.UNAVAILABLE)).toBe('UNAVAILABLE');
    expect(statusName(99)).toBe('UNKNOWN');
  });
});
