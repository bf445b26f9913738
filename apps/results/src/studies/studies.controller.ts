import { Controller, Get, Param, UseFilters } from '@nestjs/common';
import { ResultsApiErrorFilter } from '../api/api-error.filter';
import { StudiesReader } from './studies-reader.service';
import { type StudyBody, toStudyBody } from './study.mapper';

/** REST: GET /v1/studies/{studyUid} — the study aggregate. */
@Controller('v1/studies')
@UseFilters(ResultsApiErrorFilter)
export class StudiesController {
  constructor(private readonly reader: StudiesReader) {}

  @Get(':studyUid')
  async get(@Param('studyUid') studyUid: string): Promise<StudyBody> {
    return toStudyBody(await this.reader.get(studyUid));
  }
}
