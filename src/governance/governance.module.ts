import { Module } from '@nestjs/common';
import { MongooseModule } from '@nestjs/mongoose';
import { RULE, RULE_REVISION, RULE_SET, RuleRevisionSchema, RuleSchemaDoc, RuleSetSchema } from './rule-store.model.js';
import { KafkaRuleChangeFeed } from './kafka-rule-change-feed.js';
import { RuleChangeFeed } from './rule-change-feed.js';
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
  // Through Kafka, so a commit on any replica reaches the agents of every replica.
  providers: [RuleStore, { provide: RuleChangeFeed, useClass: KafkaRuleChangeFeed }],
  exports: [RuleStore, RuleChangeFeed],
})
export class GovernanceModule {}
