export { LATENCY_BUCKETS, latencyBucket, latencyBucketLowerMs } from './call-stats.js';
export { ManualClock, TickerClock } from './clock.js';
export { MAX_CHAINS } from './chains.js';
export { Engine } from './engine.js';
export { MAX_CALLERS } from './limit.js';
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
  type StatsView,
} from './types.js';
