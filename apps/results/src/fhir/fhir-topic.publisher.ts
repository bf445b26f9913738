import { Inject, Injectable } from '@nestjs/common';
import { ThoraxError } from '@thorax/contracts';
import { PUBLISHER, type Publisher } from '@thorax/kafka';
import { FINDINGS_REPOSITORY, type FindingsRepository } from '../store/findings.repository';
import { studyBundle, studyResources } from './fhir-resources';
import { FHIR_OPTIONS, type FhirOptions } from './fhir.service';

export interface FhirTopicOptions {
  /** The topic of study bundles (thorax.fhir.v1); null: not published. */
  topic: string | null;
}

export const FHIR_TOPIC_OPTIONS = Symbol('thorax.results.fhir-topic-options');

/** Kafka headers of a bundle record. */
export const FHIR_HEADERS = { contentType: 'content-type', version: 'thorax-fhir-version' } as const;

/**
 * Publishes each new version of a study's FHIR resources as a transaction Bundle, keyed by the
 * Study Instance UID. The store is the outbox: a version is marked published only after Kafka
 * acknowledged it, and the findings record is acknowledged only after that, so a crash or a
 * broker outage republishes (at least once) and a redelivered event publishes nothing new.
 * Receivers keep the bundle with the highest meta.versionId per key.
 */
@Injectable()
export class FhirTopicPublisher {
  constructor(
    @Inject(FHIR_TOPIC_OPTIONS) private readonly options: FhirTopicOptions,
    @Inject(FHIR_OPTIONS) private readonly fhir: FhirOptions,
    @Inject(FINDINGS_REPOSITORY) private readonly repository: FindingsRepository,
    @Inject(PUBLISHER) private readonly publisher: Publisher,
  ) {}

  get enabled(): boolean {
    return this.options.topic !== null;
  }

  /** Publishes the study's current version unless it already went out; returns the version published. */
  async publishStudy(studyUid: string): Promise<number | null> {
    const topic = this.options.topic;
    if (topic === null) return null;
    const stored = await this.repository.getStudy({ studyUid });
    if (!stored || stored.publishedVersion >= stored.version) return null;
    const bundle = studyBundle(studyResources(stored, this.fhir), this.fhir.baseUrl);
    try {
      await this.publisher.publish([
        {
          topic,
          key: studyUid,
          value: Buffer.from(JSON.stringify(bundle), 'utf8'),
          headers: { [FHIR_HEADERS.contentType]: 'application/fhir+json', [FHIR_HEADERS.version]: String(stored.version) },
        },
      ]);
    } catch (error) {
      throw new ThoraxError('INTERNAL_ERROR', `publishing the FHIR bundle failed: ${(error as Error).message}`, {
        stage: 'results',
        redeliver: true,
        cause: error,
      });
    }
    await this.repository.markPublished(studyUid, stored.version);
    return stored.version;
  }
}
