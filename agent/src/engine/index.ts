export { LATENCY_BUCKETS, latencyBucket } from '../../../src/agent-protocol/latency-histogram.js';
export { DEFAULT_SLOW_MS, MAX_PARKED, MAX_WAIT_SEC } from './call-stats.js';
export { ManualClock, TickerClock } from './clock.js';
export { MAX_CHAINS } from './chains.js';
export { Engine } from './engine.js';
export { MAX_CALLERS } from './limit.js';
export { OTHER_RESOURCE, pathTemplate, resourceOf } from './resource.js';
export { MAX_KEYS_PER_SECOND } from './stats-entries.js';
// Named, not `export *`: the agent package is CommonJS, and Node finds a CommonJS module's named
// exports only when they are listed.
export {
  DUBBO,
  HTTP,
  INBOUND,
  OUTBOUND,
  type Answer,
  type AnswerReason,
  type BreakerState,
  type Call,
  type Clock,
  type Direction,
  type EngineOptions,
  type Protocol,
  type SecondStats,
  type StatsEntry,
  type StatsKeyView,
  type StatsView,
} from './types.js';
