import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { StowController } from './stow.controller';

/** DICOMweb STOW-RS (INGEST_STOW_*; docs/pacs.md). */
@Module({ imports: [AuditModule], controllers: [StowController] })
export class DicomwebModule {}
