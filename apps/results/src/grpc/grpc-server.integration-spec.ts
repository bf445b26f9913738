import {
  type ClientDuplexStream,
  credentials,
  type GrpcObject,
  loadPackageDefinition,
  Metadata,
  type ServiceClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf';
import { type FileDescriptorProto, FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { loadFileDescriptorSetFromBuffer, loadSync } from '@grpc/proto-loader';
import {
  FindingsStatus,
  type GetFindingsRequest,
  type GetFindingsResponse,
  type GetStudyResponse,
  type ListFindingsRequest,
  ResultsServiceClient,
  type WatchFindingsResponse,
} from '@thorax/contracts';
import { createLogger } from '@thorax/observability';
import path from 'node:path';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { FindingsReader } from '../findings/findings-reader.service';
import { StudiesReader } from '../studies/studies-reader.service';
import { ResultsGrpcController } from './results.grpc-controller';
import { migrate } from '../store/migrations';
import { PgliteSqlClient } from '../store/pglite-sql-client';
import type { SqlClient } from '../store/sql-client';
import { sqlResultsStore } from '../store/sql-results-store';
import type { ResultsStore } from '../store/results-store.port';
import { errorEvent, okEvent } from '../testing/findings-events';
import { storeOne } from '../testing/store-one';
import { GrpcServer } from './grpc-server';

jest.setTimeout(60_000);

const log = createLogger({ service: 'results-test', version: '0', level: 'silent' });
const controllerOver = (repository: ResultsStore) =>
  new ResultsGrpcController(new FindingsReader(repository.findings, repository.feed, { watchPollMs: 60_000 }), new StudiesReader(repository.studies), log);

let db: SqlClient;
let repo: ResultsStore;
let server: GrpcServer;
let address: string;
let client: ResultsServiceClient;

beforeAll(async () => {
  db = await PgliteSqlClient.open('memory://');
  await migrate(db);
  repo = sqlResultsStore(db);
  server = new GrpcServer({ host: '127.0.0.1', port: 0, shutdownGraceMs: 2000 }, controllerOver(repo), log, repo.health);
  const port = await server.start();
  expect(port).toBeGreaterThan(0);
  address = `127.0.0.1:${port}`;
  client = new ResultsServiceClient(address, credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.stop();
  await db?.close();
});

const get = (request: Partial<GetFindingsRequest>) =>
  new Promise<{ error: ServiceError | null; response: GetFindingsResponse | undefined }>((resolve) =>
    client.getFindings({ id: '', modelVersion: '', ...request }, (error, response) => resolve({ error, response })),
  );
const list = (request: Partial<ListFindingsRequest>) =>
  new Promise<{ error: ServiceError | null; ids: string[]; next: string }>((resolve) =>
    client.listFindings(
      { studyUid: '', accession: '', status: '', positiveLabel: '', pageSize: 0, pageToken: '', from: undefined, to: undefined, ...request },
      (error, response) =>
        resolve({ error, ids: response?.results.map((r) => r.id) ?? [], next: response?.nextPageToken ?? '' }),
    ),
  );

describe('ResultsService over gRPC', () => {
  it('GetFindings: the latest result as a FindingsResult, NOT_FOUND and INVALID_ARGUMENT', async () => {
    await storeOne(repo, okEvent('grpc-1', { version: 'v1', positives: ['Mass'] }));
    await storeOne(repo, okEvent('grpc-1', { version: 'v2', positives: ['Edema', 'Hernia'] }));

    const latest = await get({ id: 'grpc-1' });
    expect(latest.error).toBeNull();
    const result = latest.response!.result!;
    expect(result.id).toBe('grpc-1');
    expect(result.status).toBe(FindingsStatus.FINDINGS_STATUS_OK);
    expect(result.model?.version).toBe('v2');
    expect(result.positives).toEqual(['Edema', 'Hernia']);
    expect(result.findings).toHaveLength(14);
    expect(result.timing?.receivedAt).toEqual(new Date('2026-11-30T10:00:00.000Z'));
    expect(result.timing?.latencyMs).toBe(412);
    expect(result.study?.accession).toBe('ACC-1');
    expect(result.storedAt).toBeInstanceOf(Date);

    expect((await get({ id: 'grpc-1', modelVersion: 'v1' })).response?.result?.positives).toEqual(['Mass']);
    expect((await get({ id: 'nope' })).error?.code).toBe(status.NOT_FOUND);
    expect((await get({ id: 'grpc-1', modelVersion: 'v9' })).error?.code).toBe(status.NOT_FOUND);
    expect((await get({ id: '' })).error?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('ListFindings: filters and page tokens, newest first', async () => {
    const study = 'list-study';
    for (let i = 0; i < 5; i += 1) {
      const info = { studyUid: study, accession: 'L-ACC' };
      await storeOne(repo, i === 3 ? errorEvent(`list-${i}`, { study: info }) : okEvent(`list-${i}`, { study: info, positives: i < 2 ? ['Pneumonia'] : ['Nodule'] }));
    }
    const pages: string[][] = [];
    let token = '';
    do {
      const page = await list({ studyUid: study, pageSize: 2, pageToken: token });
      expect(page.error).toBeNull();
      pages.push(page.ids);
      token = page.next;
    } while (token);
    expect(pages).toEqual([['list-4', 'list-3'], ['list-2', 'list-1'], ['list-0']]);
    expect((await list({ studyUid: study, positiveLabel: 'Pneumonia' })).ids).toEqual(['list-1', 'list-0']);
    expect((await list({ accession: 'L-ACC', status: 'error' })).ids).toEqual(['list-3']);
    expect((await list({ status: 'pending' })).error?.code).toBe(status.INVALID_ARGUMENT);
    expect((await list({ pageToken: 'forged' })).error?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('WatchFindings: replays after the cursor, then streams new results; no cursor means from now', async () => {
    const first = await storeOne(repo, okEvent('watch-0'));
    if (first.kind !== 'stored') throw new Error('expected a new row');
    await storeOne(repo, okEvent('watch-1'));

    const resumed = collect(client.watchFindings({ cursor: first.record.seq.toString() }));
    const fromNow = collect(client.watchFindings({ cursor: '' }));
    await resumed.until(1);
    expect(resumed.ids()).toEqual(['watch-1']);
    await new Promise((r) => setTimeout(r, 200)); // the from-now stream has read its starting point

    await storeOne(repo, errorEvent('watch-2'));
    await storeOne(repo, okEvent('watch-3'));
    await resumed.until(3);
    await fromNow.until(2);
    expect(resumed.ids()).toEqual(['watch-1', 'watch-2', 'watch-3']);
    expect(fromNow.ids()).toEqual(['watch-2', 'watch-3']);
    expect(resumed.messages[1]!.result?.status).toBe(FindingsStatus.FINDINGS_STATUS_ERROR);
    // Cursors increase, and resuming from one continues right after it.
    const cursors = resumed.messages.map((m) => BigInt(m.cursor));
    expect(cursors[0]! < cursors[1]! && cursors[1]! < cursors[2]!).toBe(true);
    const again = collect(client.watchFindings({ cursor: resumed.messages[1]!.cursor }));
    await again.until(1);
    expect(again.ids()).toEqual(['watch-3']);
    for (const stream of [resumed, fromNow, again]) stream.cancel();

    const bad = collect(client.watchFindings({ cursor: 'yesterday' }));
    expect((await bad.ended).code).toBe(status.INVALID_ARGUMENT);
  });

  it('ListFindings: completion time range', async () => {
    const study = 'time-study';
    for (const [i, at] of ['2026-02-01T00:00:00Z', '2026-02-02T00:00:00Z', '2026-02-03T00:00:00Z'].entries()) {
      await storeOne(repo, okEvent(`time-${i}`, { study: { studyUid: study }, receivedAt: new Date(at) }));
    }
    expect((await list({ studyUid: study, from: new Date('2026-02-02T00:00:00Z') })).ids).toEqual(['time-2', 'time-1']);
    expect((await list({ studyUid: study, to: new Date('2026-02-02T00:00:00Z') })).ids).toEqual(['time-0']);
    const inverted = await list({ studyUid: study, from: new Date('2026-02-03T00:00:00Z'), to: new Date('2026-02-01T00:00:00Z') });
    expect(inverted.error?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('GetStudy: the study aggregate, NOT_FOUND and INVALID_ARGUMENT', async () => {
    const study = '1.2.840.113619.2.55.3';
    await storeOne(repo, okEvent('study-pa', { study: { studyUid: study, accession: 'S-ACC', viewPosition: 'PA' }, positives: ['Edema'] }));
    await storeOne(repo, okEvent('study-ll', { study: { studyUid: study, accession: 'S-ACC', viewPosition: 'LL' }, positives: ['Mass'] }));
    const call = (studyUid: string) =>
      new Promise<{ error: ServiceError | null; response: GetStudyResponse | undefined }>((resolve) =>
        client.getStudy({ studyUid }, (error, response) => resolve({ error, response })),
      );
    const { error, response } = await call(study);
    expect(error).toBeNull();
    const result = response!.study!;
    expect(result).toMatchObject({ studyUid: study, accession: 'S-ACC', status: FindingsStatus.FINDINGS_STATUS_OK, positives: ['Edema'], contributingImages: ['study-pa'], version: 2 });
    expect(result.findings).toHaveLength(14);
    expect(result.findings.find((f) => f.label === 'Edema')).toMatchObject({ probability: 0.83, positive: true, imageId: 'study-pa' });
    expect(result.images.map((i) => [i.id, i.contributed, i.excluded])).toEqual([
      ['study-ll', false, 'not-frontal'],
      ['study-pa', true, ''],
    ]);
    expect(result.updatedAt).toBeInstanceOf(Date);
    expect((await call('1.2.404')).error?.code).toBe(status.NOT_FOUND);
    expect((await call('')).error?.code).toBe(status.INVALID_ARGUMENT);
  });

  it('grpc.health.v1: SERVING while the store answers, NOT_SERVING when it does not', async () => {
    const health = healthClient(address);
    expect(await check(health, '')).toBe('SERVING');
    expect(await check(health, 'thorax.v1.ResultsService')).toBe('SERVING');
    health.close();

    const broken = { ping: async () => Promise.reject(new Error('store away')) };
    const sick = new GrpcServer({ host: '127.0.0.1', port: 0, shutdownGraceMs: 1000 }, controllerOver(repo), log, broken);
    const port = await sick.start();
    const sickHealth = healthClient(`127.0.0.1:${port}`);
    expect(await check(sickHealth, 'thorax.v1.ResultsService')).toBe('NOT_SERVING');
    sickHealth.close();
    await sick.stop();
  });

  it('is discoverable through server reflection by a client that knows only the address', async () => {
    const reflection = reflectionClient(address);
    const services = await reflect(reflection, { list_services: '' });
    const names = (services.list_services_response as { service: { name: string }[] }).service.map((s) => s.name);
    expect(names).toContain('thorax.v1.ResultsService');
    expect(names).toContain('grpc.health.v1.Health');

    // Fetch the descriptors, build a client from them alone and call the service with it.
    const files = await reflect(reflection, { file_containing_symbol: 'thorax.v1.ResultsService' });
    const protos = (files.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
    const definition = loadFileDescriptorSetFromBuffer(fileDescriptorSet(protos), { keepCase: true, longs: String, enums: String });
    expect(Object.keys(definition)).toContain('thorax.v1.ResultsService');
    const Dynamic = (loadPackageDefinition(definition).thorax as GrpcObject).v1 as GrpcObject;
    const dynamic = new (Dynamic.ResultsService as ServiceClientConstructor)(address, credentials.createInsecure());
    const found = await new Promise<{ result: { id: string; status: string } }>((resolve, reject) =>
      dynamic.GetFindings({ id: 'grpc-1' }, new Metadata(), (error: ServiceError | null, response: never) =>
        error ? reject(error) : resolve(response),
      ),
    );
    expect(found.result).toMatchObject({ id: 'grpc-1', status: 'FINDINGS_STATUS_OK' });
    dynamic.close();
    reflection.close();
  });

  it('reflection serves compiled descriptors that link strictly, well-known types and map entries included', async () => {
    const reflection = reflectionClient(address);
    const services = await reflect(reflection, { list_services: '' });
    expect((services.list_services_response as { service: { name: string }[] }).service.map((s) => s.name).sort()).toEqual([
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
      'thorax.v1.ResultsService',
    ]);
    for (const [symbol, expected] of [
      ['thorax.v1.ResultsService', ['thorax/v1/results_service.proto', 'google/protobuf/timestamp.proto', 'thorax/v1/findings.proto', 'thorax/v1/common.proto']],
      ['thorax.v1.ListFindingsRequest.from', ['thorax/v1/results_service.proto']],
      ['grpc.health.v1.Health', ['grpc/health/v1/health.proto']],
      ['grpc.reflection.v1.ServerReflection', ['grpc/reflection/v1/reflection.proto']],
    ] as const) {
      const answer = await reflect(reflection, { file_containing_symbol: symbol });
      const protos = (answer.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
      const files = protos.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
      // The file declaring the symbol first, then each import it needs, transitively, once.
      expect(files.map((f) => f.name).slice(0, expected.length)).toEqual(expected);
      expect(new Set(files.map((f) => f.name)).size).toBe(files.length);
      // Linking resolves every import and type reference against these files alone, as grpcurl does.
      const registry = link(files);
      expect(registry.getFile(expected[0])?.name).toBe(expected[0].replace(/\.proto$/, ''));
    }
    const timestamp = await reflect(reflection, { file_containing_symbol: 'google.protobuf.Timestamp' });
    expect((timestamp.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto).toHaveLength(1);

    // grpc.health.v1.HealthListResponse.statuses is a map whose entry is named as protoc names it.
    const health = await reflect(reflection, { file_by_filename: 'grpc/health/v1/health.proto' });
    const [healthFile] = (health.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto.map((b) =>
      fromBinary(FileDescriptorProtoSchema, b),
    );
    const list = healthFile.messageType.find((m) => m.name === 'HealthListResponse');
    expect(list?.nestedType.map((n) => [n.name, n.options?.mapEntry])).toEqual([['StatusesEntry', true]]);
    expect(list?.field[0]).toMatchObject({ name: 'statuses', typeName: '.grpc.health.v1.HealthListResponse.StatusesEntry' });
    const registry = link([healthFile]);
    expect(registry.getMessage('grpc.health.v1.HealthListResponse')?.fields[0].fieldKind).toBe('map');

    // Unknown names are NOT_FOUND errors in the stream, which stays usable.
    const missing = await reflect(reflection, { file_containing_symbol: 'thorax.v1.Nope' });
    expect(missing.error_response).toMatchObject({ error_code: status.NOT_FOUND });
    const missingFile = await reflect(reflection, { file_by_filename: 'google/protobuf/any.proto' });
    expect(missingFile.error_response).toMatchObject({ error_code: status.NOT_FOUND });
    reflection.close();
  });

  it('shutdown ends open watch streams instead of hanging on them', async () => {
    const extra = new GrpcServer(
      { host: '127.0.0.1', port: 0, shutdownGraceMs: 10_000 },
      controllerOver(repo),
      log,
      repo.health,
    );
    const port = await extra.start();
    const other = new ResultsServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const stream = collect(other.watchFindings({ cursor: '0' }));
    await stream.until(1);
    const started = Date.now();
    await extra.stop();
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await stream.ended).code).toBe(status.OK);
    other.close();
  });
});

function collect(stream: NodeJS.ReadableStream & { cancel(): void }) {
  const messages: WatchFindingsResponse[] = [];
  const waiters: (() => void)[] = [];
  stream.on('data', (message: WatchFindingsResponse) => {
    messages.push(message);
    for (const wake of waiters.splice(0)) wake();
  });
  const ended = new Promise<{ code: number }>((resolve) => {
    stream.on('status', (s: { code: number }) => resolve(s));
    stream.on('error', () => undefined);
  });
  return {
    messages,
    ended,
    ids: () => messages.map((m) => m.result?.id),
    cancel: () => stream.cancel(),
    async until(count: number): Promise<void> {
      const deadline = Date.now() + 10_000;
      while (messages.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${messages.length} of ${count} messages arrived`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 100);
        });
      }
    },
  };
}

/** A health client from the health.proto that ships with grpc-health-check (as any client would have it). */
function healthClient(target: string) {
  const loaded = loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }));
  const v1 = ((loaded.grpc as GrpcObject).health as GrpcObject).v1 as GrpcObject;
  return new (v1.Health as ServiceClientConstructor)(target, credentials.createInsecure());
}

function check(client: InstanceType<ServiceClientConstructor>, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.Check({ service }, (error: ServiceError | null, response: { status: string }) => (error ? reject(error) : resolve(response.status))),
  );
}

/** A reflection client from the reflection.proto that ships inside @grpc/reflection. */
function reflectionClient(target: string) {
  const proto = path.join(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
  const loaded = loadPackageDefinition(loadSync(proto, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }));
  const v1 = ((loaded.grpc as GrpcObject).reflection as GrpcObject).v1 as GrpcObject;
  return new (v1.ServerReflection as ServiceClientConstructor)(target, credentials.createInsecure());
}

function reflect(client: InstanceType<ServiceClientConstructor>, request: object): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = client.ServerReflectionInfo() as ClientDuplexStream<object, Record<string, unknown>>;
    call.on('data', (response) => {
      resolve(response);
      call.end();
    });
    call.on('error', reject);
    call.write(request);
  });
}

/**
 * Links files as a strict client does: each import must be among them and every type reference
 * must resolve (throws otherwise). Files go in dependency order, imports first.
 */
function link(files: FileDescriptorProto[]) {
  const ordered: FileDescriptorProto[] = [];
  const add = (file: FileDescriptorProto | undefined, from: string): void => {
    if (!file) throw new Error(`an import of ${from} is not among the reflected files`);
    if (ordered.includes(file)) return;
    for (const name of file.dependency) add(files.find((f) => f.name === name), file.name);
    ordered.push(file);
  };
  for (const file of files) add(file, file.name);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: ordered }));
}

/** Wraps FileDescriptorProto bytes into a FileDescriptorSet (field 1, length-delimited). */
function fileDescriptorSet(files: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const file of files) {
    const length: number[] = [];
    let n = file.length;
    do {
      length.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    parts.push(Buffer.from([0x0a, ...length]), file);
  }
  return Buffer.concat(parts);
}
