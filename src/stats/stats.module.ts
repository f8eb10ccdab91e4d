import { Module } from '@nestjs/common';
import { StatsController } from './stats.controller.js';
import { StatsIngest } from './stats-ingest.js';
import { StatsService } from './stats.service.js';

/**
 * Call statistics (docs/stats.md): agents' frames in (`StatsIngest`, used by the agent hub) and to
 * Kafka; the aggregator from Kafka into MongoDB; the queries and the live stream out.
 */
@Module({
  controllers: [StatsController],
  providers: [StatsService, StatsIngest],
  exports: [StatsService, StatsIngest],
})
export class StatsModule {}
