/** The shapes of the server's answers the dashboard reads (see docs/*.md and /docs/openapi.json). */

export interface Page<T> {
  total: number;
  page: number;
  pageSize: number;
  items: T[];
}

// The catalog's shapes are the server's own (type-only: nothing of the server reaches the bundle).
import type { SourceKind } from '../../src/registry-bridge/registration.js';

export type { DubboServiceRef, InstanceStatus, SourceKind } from '../../src/registry-bridge/registration.js';
export type {
  ApplicationDetail,
  CatalogApplication,
  CatalogInstance,
  ProvidedService,
} from '../../src/registry-bridge/catalog.js';

export interface SourceState {
  source: string;
  reachable: boolean;
  error?: string;
  since: number;
  registrations: number;
  badInput: Record<string, number>;
}

export type ControlState = 'pending' | 'active' | 'reverted' | 'superseded' | 'failed';

export interface NativeControl {
  _id: string;
  action: 'isolate' | 'weight';
  application: string;
  instanceId: string;
  host: string;
  port: number;
  registry: SourceKind;
  targets: string[];
  services?: { interface: string; group: string; version: string }[];
  weight?: number;
  state: ControlState;
  actor: string;
  from: string;
  reason: string;
  createdAt: string;
  revertedAt?: string;
  revertedBy?: string;
  error?: string;
}

// ---- agents ----------------------------------------------------------------------------------

export type SyncState = 'in-sync' | 'pending' | 'nacked' | 'disconnected';
export type BreakerState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';

export interface AgentApplication {
  application: string;
  revision: number;
  connected: number;
  acknowledged: number;
  nacked: number;
  pending: number;
}

/** A server replica as `/api/agents` lists it (the answering one first, `self`). */
export interface ReplicaState {
  replica: string;
  self: boolean;
  connected: number;
  lastSeenAt: string;
}

export interface AgentView {
  instanceId: string;
  /** The server replica holding (or last holding) the session. */
  replica: string;
  application: string;
  host: string;
  ports: number[];
  remoteAddress: string;
  agent: { language: 'node' | 'java'; version: string };
  protocol: number;
  capabilities: string[];
  connected: boolean;
  connectedSince?: string;
  disconnectedAt?: string;
  lastHeartbeatAt?: string;
  appliedRevision: number;
  appliedAt?: string;
  sync: SyncState;
  lastNack: { revision: number; reason: string; keptRevision: number; at?: string } | null;
  clockSkewMs: number | null;
  breakers: Record<string, { state: BreakerState; at?: string }>;
}

export interface ApplicationAgents {
  application: string;
  revision: number;
  summary: { connected: number; inSync: number; pending: number; nacked: number; disconnected: number };
  agents: AgentView[];
}

export interface RevisionStatus {
  application: string;
  revision: number;
  acknowledged: number;
  nacked: number;
  pending: number;
  connected: number;
  instances?: { instanceId: string; appliedRevision: number; state: 'in-sync' | 'pending' | 'nacked'; nack?: string }[];
}

// ---- rules -----------------------------------------------------------------------------------

export type RuleKind = 'limit' | 'breaker' | 'degrade';

export interface RuleTarget {
  direction: 'inbound' | 'outbound';
  caller?: string;
  callee?: string;
  resource: { type: 'application' | 'dubbo' | 'http'; interface?: string; method?: string; path?: string };
}

export interface Rule {
  id: string;
  kind: RuleKind;
  application: string;
  enabled: boolean;
  description?: string;
  target: RuleTarget;
  [field: string]: unknown;
}

export interface RuleListItem extends Rule {
  targetKey: string;
  revision: number;
  updatedAt: string;
  updatedBy: string;
}

export interface Conflict {
  kind: 'duplicate' | 'overlap' | 'contradiction';
  ruleIds: string[];
  message: string;
}

export interface RuleSetView {
  application: string;
  revision: number;
  rules: Rule[];
  conflicts: Conflict[];
}

export interface ValidateResult {
  valid: boolean;
  issues: { path: string; message: string }[];
  conflicts: Conflict[];
}

export interface RuleChange {
  ruleId: string;
  before: Rule | null;
  after: Rule | null;
}

export interface CommitResult {
  application: string;
  revision: number;
  changed: boolean;
  rule?: Rule | null;
  changes: RuleChange[];
  conflicts: Conflict[];
}

export interface RuleRevision {
  _id: string;
  application: string;
  revision: number;
  kind: 'create' | 'update' | 'delete' | 'rollback';
  rollbackTo?: number;
  ruleIds: string[];
  changes: RuleChange[];
  actor: string;
  from: string;
  reason: string;
  at: string;
}

// ---- stats -----------------------------------------------------------------------------------

export interface Summary {
  calls: number;
  successes: number;
  errors: number;
  limited: number;
  broken: number;
  degraded: number;
  slow: number;
  qps: number;
  errorRate: number;
  avgMs: number;
  maxMs: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface LiveSecond {
  application: string;
  t: number;
  instances: number;
  inbound: Summary;
  outbound: Summary;
  dropped: number;
  revision: number;
}

export interface SeriesPoint extends Summary {
  t: number;
  dropped: number;
}

export interface Series {
  application: string;
  from: number;
  to: number;
  step: number;
  resolution: string;
  points: SeriesPoint[];
}

export interface TopItem extends Summary {
  direction: 'inbound' | 'outbound';
  protocol?: 'http' | 'dubbo';
  resource?: string;
  peer?: string;
}

export interface TopResult {
  application: string;
  from: number;
  to: number;
  resolution: string;
  by: 'resource' | 'peer';
  metric: 'qps' | 'errors' | 'p99';
  items: TopItem[];
}

export interface GraphNode {
  application: string;
  reporting: boolean;
  inbound: Summary;
  unknownCalleeCalls: number;
}

export interface GraphEdge extends Summary {
  caller: string;
  callee: string;
  source: 'outbound' | 'inbound';
}

export interface GraphResult {
  from: number;
  to: number;
  resolution: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export type Outcome = 'success' | 'error' | 'limited' | 'broken' | 'degraded';

export interface CallRecord {
  id: string;
  application: string;
  instanceId: string;
  at: number;
  traceId: string;
  direction: 'inbound' | 'outbound';
  caller: string;
  callee: string;
  protocol: 'http' | 'dubbo';
  method: string;
  path: string;
  status: number;
  latencyMs: number;
  outcome: Outcome;
  kept: 'slow' | 'error' | 'blocked' | 'sampled';
  ruleId?: string;
  details?: Record<string, string>;
}

export interface RecordsPage {
  page: number;
  pageSize: number;
  items: CallRecord[];
  hasMore: boolean;
}

// ---- audit -----------------------------------------------------------------------------------

export interface AuditEntry {
  _id: string;
  at: string;
  actor: string;
  role?: string;
  from: string;
  action: string;
  outcome: 'ok' | 'denied' | 'rejected' | 'failed';
  status: number;
  application?: string;
  target?: string;
  revision?: number;
  before?: unknown;
  after?: unknown;
  reason?: string;
  detail?: string;
}
