import type { INestApplication } from '@nestjs/common';
import { type DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { TokenVerifier } from '@thorax/auth';
import type { ServerTls } from '@thorax/config';
import { ObservabilityModule } from '@thorax/observability';
import type { AddressInfo } from 'node:net';
import { FhirController } from '../fhir/fhir.controller';
import { FHIR_OPTIONS, type FhirOptions, FhirService } from '../fhir/fhir.service';
import { FindingsController } from '../findings/findings.controller';
import { FindingsReader, READER_OPTIONS } from '../findings/findings-reader.service';
import { OpenApiController } from '../openapi/openapi.controller';
import { FINDINGS_FEED, FINDINGS_QUERIES, type ResultsStore, STUDY_QUERIES } from '../store/results-store.port';
import { StudiesController } from '../studies/studies.controller';
import { StudiesReader } from '../studies/studies-reader.service';

@Module({})
class ResultsHttpTestModule {
  static forRoot(store: ResultsStore, fhir: FhirOptions, auth: TokenVerifier | null): DynamicModule {
    return {
      module: ResultsHttpTestModule,
      imports: [ObservabilityModule.forRoot({ service: 'results-test', version: 'test', logLevel: 'silent', auth })],
      controllers: [FindingsController, StudiesController, FhirController, OpenApiController],
      providers: [
        { provide: FINDINGS_QUERIES, useValue: store.findings },
        { provide: FINDINGS_FEED, useValue: store.feed },
        { provide: STUDY_QUERIES, useValue: store.studies },
        { provide: READER_OPTIONS, useValue: { watchPollMs: 60_000 } },
        { provide: FHIR_OPTIONS, useValue: fhir },
        FindingsReader,
        StudiesReader,
        FhirService,
      ],
    };
  }
}

/**
 * The results HTTP edge (REST, FHIR, OpenAPI) in-process over a given store: on a free port unless
 * `port` is given, with bearer-token auth when `auth` is, HTTPS when `tls` is.
 */
export async function startResultsHttp(
  store: ResultsStore,
  fhir: FhirOptions = {},
  options: { auth?: TokenVerifier | null; tls?: ServerTls | null; port?: number } = {},
): Promise<{ app: INestApplication; url: string }> {
  const tls = options.tls ?? null;
  const app = await NestFactory.create(ResultsHttpTestModule.forRoot(store, fhir, options.auth ?? null), {
    logger: false,
    bodyParser: false,
    ...(tls ? { httpsOptions: { cert: tls.cert, key: tls.key } } : {}),
  });
  await app.listen(options.port ?? 0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}` };
}
