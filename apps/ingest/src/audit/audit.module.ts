import { Module } from '@nestjs/common';
import { EdgeAudit } from './edge-audit';

/** The audit trail of the ingest edges (docs/pacs.md). */
@Module({ providers: [EdgeAudit], exports: [EdgeAudit] })
export class AuditModule {}
