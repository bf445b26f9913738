import { Inject, Injectable } from '@nestjs/common';
import { ResultsApiError } from '../api/api-error';
import { type StoredStudy, STUDY_QUERIES, type StudyQueries } from '../store/results-store.port';

/** The study read side shared by REST, gRPC and FHIR. */
@Injectable()
export class StudiesReader {
  constructor(@Inject(STUDY_QUERIES) private readonly studies: StudyQueries) {}

  /** A study's aggregate by Study Instance UID; NOT_FOUND when no result of it is stored. */
  async get(studyUid: string): Promise<StoredStudy> {
    if (!studyUid) throw new ResultsApiError('INVALID_ARGUMENT', 'studyUid is required');
    if (studyUid.length > 256) throw new ResultsApiError('INVALID_ARGUMENT', 'studyUid is longer than 256 characters');
    const stored = await this.studies.get({ studyUid });
    if (!stored) throw new ResultsApiError('NOT_FOUND', `no results stored for study ${JSON.stringify(studyUid)}`);
    return stored;
  }
}
