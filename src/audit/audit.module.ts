import { Global, Module } from '@nestjs/common';
import { MongooseModule } from '@nestjs/mongoose';
import { AUDIT_ENTRY, AuditEntrySchema } from './audit-entry.model.js';
import { AuditLog } from './audit-log.service.js';
import { AuditController } from './audit.controller.js';

@Global()
@Module({
  imports: [MongooseModule.forFeature([{ name: AUDIT_ENTRY, schema: AuditEntrySchema }])],
  controllers: [AuditController],
  providers: [AuditLog],
  exports: [AuditLog],
})
export class AuditModule {}
