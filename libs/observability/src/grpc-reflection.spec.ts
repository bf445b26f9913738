import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { status } from '@grpc/grpc-js';
import { fileDescriptorSet } from '@thorax/contracts';
import { DescriptorReflection } from './grpc-reflection';

const SERVICES = ['thorax.v1.ResultsService', 'grpc.health.v1.Health'];
const reflection = new DescriptorReflection(fileDescriptorSet(), SERVICES);

const filesOf = (answer: ReturnType<DescriptorReflection['answer']>) =>
  (answer.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);

describe('DescriptorReflection', () => {
  it('answers a symbol with its file, then each import once, byte for byte as compiled', () => {
    const set = fromBinary(FileDescriptorSetSchema, fileDescriptorSet());
    const compiled = set.file.find((f) => f.name === 'thorax/v1/results_service.proto');
    const answer = reflection.answer({ message_request: 'file_containing_symbol', file_containing_symbol: 'thorax.v1.ResultsService.WatchFindings' });
    expect(filesOf(answer)).toEqual([
      'thorax/v1/results_service.proto',
      'google/protobuf/timestamp.proto',
      'thorax/v1/findings.proto',
      'thorax/v1/common.proto',
    ]);
    expect(Buffer.from(answer.file_descriptor_response?.file_descriptor_proto[0] ?? [])).toEqual(
      Buffer.from(toBinary(FileDescriptorProtoSchema, compiled ?? create(FileDescriptorProtoSchema))),
    );
  });

  it('finds messages, nested map entries, fields, enums and their values, with or without a leading dot', () => {
    for (const symbol of [
      'thorax.v1.ListFindingsRequest.from',
      '.thorax.v1.FindingsResult',
      'grpc.health.v1.HealthListResponse.StatusesEntry',
      'grpc.health.v1.HealthCheckResponse.ServingStatus',
      'grpc.health.v1.HealthCheckResponse.SERVING',
      'google.protobuf.Timestamp',
    ]) {
      const answer = reflection.answer({ message_request: 'file_containing_symbol', file_containing_symbol: symbol });
      expect([symbol, answer.error_response]).toEqual([symbol, undefined]);
    }
  });

  it('lists the server services and both reflection versions', () => {
    expect(reflection.answer({ message_request: 'list_services', list_services: '*' }).list_services_response?.service.map((s) => s.name)).toEqual([
      ...SERVICES,
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]);
  });

  it('reports unknown names as NOT_FOUND, extension numbers of a known type, a request without a method as INVALID_ARGUMENT', () => {
    expect(reflection.answer({ message_request: 'file_containing_symbol', file_containing_symbol: 'thorax.v1.Nope' }).error_response?.error_code).toBe(status.NOT_FOUND);
    expect(reflection.answer({ message_request: 'file_by_filename', file_by_filename: 'thorax/v1/nope.proto' }).error_response?.error_code).toBe(status.NOT_FOUND);
    expect(
      reflection.answer({ message_request: 'file_containing_extension', file_containing_extension: { containing_type: 'thorax.v1.FindingsResult', extension_number: 100 } })
        .error_response?.error_code,
    ).toBe(status.NOT_FOUND);
    expect(reflection.answer({ message_request: 'all_extension_numbers_of_type', all_extension_numbers_of_type: 'thorax.v1.FindingsResult' }).all_extension_numbers_response).toEqual({
      base_type_name: 'thorax.v1.FindingsResult',
      extension_number: [],
    });
    expect(reflection.answer({ message_request: 'all_extension_numbers_of_type', all_extension_numbers_of_type: 'thorax.v1.Nope' }).error_response?.error_code).toBe(
      status.NOT_FOUND,
    );
    expect(reflection.answer({ host: 'h' })).toMatchObject({ valid_host: 'h', error_response: { error_code: status.INVALID_ARGUMENT } });
  });

  it('refuses at construction a set that lacks an import or a listed service', () => {
    const set = fromBinary(FileDescriptorSetSchema, fileDescriptorSet());
    const withoutTimestamp = create(FileDescriptorSetSchema, { file: set.file.filter((f) => f.name !== 'google/protobuf/timestamp.proto') });
    expect(() => new DescriptorReflection(toBinary(FileDescriptorSetSchema, withoutTimestamp), SERVICES)).toThrow(/google\/protobuf\/timestamp\.proto/);
    expect(() => new DescriptorReflection(fileDescriptorSet(), [...SERVICES, 'thorax.v1.IngestServiceX'])).toThrow(/lacks service thorax\.v1\.IngestServiceX/);
  });
});
