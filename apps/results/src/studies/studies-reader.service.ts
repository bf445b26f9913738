import { Inject, Injectable } from '@nestjs/common';
import { ResultsApiError } from '../findings/api-error';
import { FINDINGS_REPOSITORY, type FindingsRepository, type StoredStudy } from '../store/findings.repository';

/** The study read side shared by REST, gRPC and FHIR. */
@Injectable()
export class StudiesReader {
  constructor(@Inject(FINDINGS_REPOSITORY) private readonly repository: FindingsRepository) {}

  /** A study's aggregate by Study Instance UID; NOT_FOUND when no result of it is stored. */
  async get(studyUid: string): Promise<StoredStudy> {
    if (!studyUid) throw new ResultsApiError('INVALID_ARGUMENT', 'studyUid is required');
    if (studyUid.length > 256) throw new ResultsApiError('INVALID_ARGUMENT', 'studyUid is longer than 256 characters');
    const stored = await this.repository.getStudy({ studyUid });
    if (!stored) throw new ResultsApiError('NOT_FOUND', `no results stored for study ${JSON.stringify(studyUid)}`);
    return stored;
  }
}
