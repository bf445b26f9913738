import type { INestApplication } from '@nestjs/common';
import { type DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ObservabilityModule } from '@thorax/observability';
import type { AddressInfo } from 'node:net';
import { FhirController } from '../fhir/fhir.controller';
import { FHIR_OPTIONS, type FhirOptions, FhirService } from '../fhir/fhir.service';
import { FindingsController } from '../findings/findings.controller';
import { FindingsReader, READER_OPTIONS } from '../findings/findings-reader.service';
import { OpenApiController } from '../openapi/openapi.controller';
import { FINDINGS_REPOSITORY, type FindingsRepository } from '../store/findings.repository';
import { StudiesController } from '../studies/studies.controller';
import { StudiesReader } from '../studies/studies-reader.service';

@Module({})
class ResultsHttpTestModule {
  static forRoot(repository: FindingsRepository, fhir: FhirOptions): DynamicModule {
    return {
      module: ResultsHttpTestModule,
      imports: [ObservabilityModule.forRoot({ service: 'results-test', version: 'test', logLevel: 'silent' })],
      controllers: [FindingsController, StudiesController, FhirController, OpenApiController],
      providers: [
        { provide: FINDINGS_REPOSITORY, useValue: repository },
        { provide: READER_OPTIONS, useValue: { watchPollMs: 60_000 } },
        { provide: FHIR_OPTIONS, useValue: fhir },
        FindingsReader,
        StudiesReader,
        FhirService,
      ],
    };
  }
}

/** The results HTTP edge (REST, FHIR, OpenAPI) in-process on a free port, over a given store. */
export async function startResultsHttp(
  repository: FindingsRepository,
  fhir: FhirOptions = {},
): Promise<{ app: INestApplication; url: string }> {
  const app = await NestFactory.create(ResultsHttpTestModule.forRoot(repository, fhir), { logger: false, bodyParser: false });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}` };
}
