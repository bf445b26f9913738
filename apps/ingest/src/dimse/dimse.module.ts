import { Module } from '@nestjs/common';
import { AuditModule } from '../audit/audit.module';
import { DimseServer } from './dimse.server';

/** The DIMSE C-ECHO/C-STORE SCP (INGEST_DIMSE_*; docs/pacs.md). */
@Module({ imports: [AuditModule], providers: [DimseServer], exports: [DimseServer] })
export class DimseModule {}
