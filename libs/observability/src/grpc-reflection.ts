import { createFileRegistry, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from '@bufbuild/protobuf/wkt';
import { type Server, type ServerDuplexStream, type ServiceDefinition, status } from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';

/** The reflection versions served: grpc.reflection.v1 and its predecessor v1alpha, same messages. */
const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

/** A ServerReflectionRequest as proto-loader decodes it (keepCase, oneofs). */
interface ReflectionRequest {
  host?: string;
  message_request?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

interface ReflectionResponse {
  valid_host: string;
  original_request: ReflectionRequest;
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  all_extension_numbers_response?: { base_type_name: string; extension_number: number[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

class LookupError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) over compiled descriptors: a
 * FileDescriptorSet as protoc or buf writes it, one FileDescriptorProto per .proto file with its
 * real name, imports and map entries. Each answer carries the file asked for and every file it
 * imports, transitively, byte for byte as compiled, so a strict client (grpcurl, Go's protodesc)
 * resolves every type, `.google.protobuf.Timestamp` included. The set is linked once at
 * construction: a missing import or an unresolvable type fails there, not in a client.
 */
export class DescriptorReflection {
  /** Serialized FileDescriptorProto by file name. */
  private readonly encoded = new Map<string, Uint8Array>();
  private readonly imports = new Map<string, readonly string[]>();
  /** File declaring each fully qualified symbol (package, messages, fields, enums, values, services, methods). */
  private readonly symbols = new Map<string, string>();
  /** Extendee → extension field number → declaring file. */
  private readonly extensions = new Map<string, Map<number, string>>();

  /**
   * @param descriptorSet a serialized google.protobuf.FileDescriptorSet holding every file the
   *   listed services need, and grpc/reflection/v1 and v1alpha
   * @param services the fully qualified services the server exposes, listed to clients
   */
  constructor(
    private readonly descriptorSet: Uint8Array,
    private readonly services: readonly string[],
  ) {
    const set = fromBinary(FileDescriptorSetSchema, descriptorSet);
    // Links every file: a type that does not resolve, or an import the set lacks, throws here.
    createFileRegistry(set);
    for (const file of set.file) {
      if (this.encoded.has(file.name)) continue;
      this.encoded.set(file.name, toBinary(FileDescriptorProtoSchema, file));
      this.imports.set(file.name, file.dependency);
      const scope = file.package;
      if (scope) this.symbols.set(scope, file.name);
      for (const message of file.messageType) this.indexMessage(file.name, scope, message);
      for (const enumType of file.enumType) this.indexEnum(file.name, scope, enumType);
      for (const extension of file.extension) this.indexExtension(file.name, scope, extension);
      for (const service of file.service) {
        const name = qualify(scope, service.name);
        this.symbols.set(name, file.name);
        for (const method of service.method) this.symbols.set(`${name}.${method.name}`, file.name);
      }
    }
    for (const service of [...services, ...REFLECTION_SERVICES]) {
      if (!this.symbols.has(service)) throw new Error(`descriptor set lacks service ${service}`);
    }
  }

  /** Registers both reflection versions on the server. */
  addToServer(server: Server): void {
    const definition = loadFileDescriptorSetFromBuffer(Buffer.from(this.descriptorSet), {
      keepCase: true,
      longs: Number,
      enums: String,
      oneofs: true,
    });
    for (const name of REFLECTION_SERVICES) {
      server.addService(definition[name] as ServiceDefinition, {
        ServerReflectionInfo: (call: ServerDuplexStream<ReflectionRequest, ReflectionResponse>) => {
          call.on('data', (request: ReflectionRequest) => call.write(this.answer(request)));
          call.on('end', () => call.end());
          // A client that goes away mid-stream: nothing to clean up.
          call.on('error', () => undefined);
        },
      });
    }
  }

  /** The answer to one request of a reflection stream. */
  answer(request: ReflectionRequest): ReflectionResponse {
    const response: ReflectionResponse = { valid_host: request.host ?? '', original_request: request };
    try {
      switch (request.message_request) {
        case 'list_services':
          response.list_services_response = {
            service: [...this.services, ...REFLECTION_SERVICES].map((name) => ({ name })),
          };
          break;
        case 'file_by_filename':
          response.file_descriptor_response = this.withImports(this.fileNamed(request.file_by_filename ?? ''));
          break;
        case 'file_containing_symbol':
          response.file_descriptor_response = this.withImports(this.fileDeclaring(request.file_containing_symbol ?? ''));
          break;
        case 'file_containing_extension': {
          const extendee = stripDot(request.file_containing_extension?.containing_type ?? '');
          const number = request.file_containing_extension?.extension_number ?? 0;
          const file = this.extensions.get(extendee)?.get(number);
          if (!file) throw new LookupError(status.NOT_FOUND, `no extension ${number} of ${extendee}`);
          response.file_descriptor_response = this.withImports(file);
          break;
        }
        case 'all_extension_numbers_of_type': {
          const type = stripDot(request.all_extension_numbers_of_type ?? '');
          if (!this.symbols.has(type)) throw new LookupError(status.NOT_FOUND, `unknown type ${type}`);
          response.all_extension_numbers_response = {
            base_type_name: type,
            extension_number: [...(this.extensions.get(type)?.keys() ?? [])].sort((a, b) => a - b),
          };
          break;
        }
        default:
          throw new LookupError(status.INVALID_ARGUMENT, 'request names no reflection method');
      }
    } catch (error) {
      const lookup = error instanceof LookupError ? error : new LookupError(status.INTERNAL, 'reflection failed');
      response.error_response = { error_code: lookup.code, error_message: lookup.message };
    }
    return response;
  }

  private fileNamed(name: string): string {
    if (!this.encoded.has(name)) throw new LookupError(status.NOT_FOUND, `unknown file ${name}`);
    return name;
  }

  private fileDeclaring(symbol: string): string {
    const file = this.symbols.get(stripDot(symbol));
    if (!file) throw new LookupError(status.NOT_FOUND, `unknown symbol ${symbol}`);
    return file;
  }

  /** The file, then everything it imports, transitively, each once. */
  private withImports(name: string): { file_descriptor_proto: Uint8Array[] } {
    const order: string[] = [];
    const visit = (file: string): void => {
      if (order.includes(file)) return;
      order.push(file);
      for (const dependency of this.imports.get(file) ?? []) visit(dependency);
    };
    visit(name);
    return { file_descriptor_proto: order.map((file) => this.encoded.get(file) as Uint8Array) };
  }

  private indexMessage(file: string, scope: string, message: DescriptorProto): void {
    const name = qualify(scope, message.name);
    this.symbols.set(name, file);
    for (const field of message.field) this.symbols.set(`${name}.${field.name}`, file);
    for (const oneof of message.oneofDecl) this.symbols.set(`${name}.${oneof.name}`, file);
    for (const nested of message.nestedType) this.indexMessage(file, name, nested);
    for (const enumType of message.enumType) this.indexEnum(file, name, enumType);
    for (const extension of message.extension) this.indexExtension(file, name, extension);
  }

  private indexEnum(file: string, scope: string, enumType: EnumDescriptorProto): void {
    this.symbols.set(qualify(scope, enumType.name), file);
    // Enum values are siblings of their enum in protobuf's scoping.
    for (const value of enumType.value) this.symbols.set(qualify(scope, value.name), file);
  }

  private indexExtension(file: string, scope: string, extension: FieldDescriptorProto): void {
    this.symbols.set(qualify(scope, extension.name), file);
    const extendee = stripDot(extension.extendee);
    const byNumber = this.extensions.get(extendee) ?? new Map<number, string>();
    byNumber.set(extension.number, file);
    this.extensions.set(extendee, byNumber);
  }
}

const qualify = (scope: string, name: string): string => (scope ? `${scope}.${name}` : name);
const stripDot = (name: string): string => (name.startsWith('.') ? name.slice(1) : name);
