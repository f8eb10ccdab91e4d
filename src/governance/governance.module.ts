import { Module } from '@nestjs/common';
import { MongooseModule } from '@nestjs/mongoose';
import { RULE, RULE_REVISION, RULE_SET, RuleRevisionSchema, RuleSchemaDoc, RuleSetSchema } from './rule-store.model.js';
import { LocalRuleChangeFeed, RuleChangeFeed } from './rule-change-feed.js';
import { RuleStore } from './rule-store.service.js';
import { RulesController } from './rules.controller.js';

@Module({
  imports: [
    MongooseModule.forFeature([
      { name: RULE_SET, schema: RuleSetSchema },
      { name: RULE_REVISION, schema: RuleRevisionSchema },
      { name: RULE, schema: RuleSchemaDoc },
    ]),
  ],
  controllers: [RulesController],
  providers: [RuleStore, { provide: RuleChangeFeed, useClass: LocalRuleChangeFeed }],
  exports: [RuleStore, RuleChangeFeed],
})
export class GovernanceModule {}
