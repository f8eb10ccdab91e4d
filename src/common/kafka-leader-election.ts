import { AssignerProtocol, type GroupMember, type GroupMemberAssignment, type Kafka, type PartitionAssigner } from 'kafkajs';
import { ensureTopic } from './kafka-topic.js';
import { SupervisedConsumer } from './supervised-consumer.js';

export type LeadershipRole = 'leader' | 'follower' | 'none';

export interface LeaderElectionLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface KafkaLeaderElectionOptions {
  kafka: Kafka;
  /** Consumer group of the candidates: one leader per group. */
  groupId: string;
  /** A topic that carries no messages; holding its partitions is the lease. Created with one partition. */
  topic: string;
  /** This candidate in logs. */
  memberName: string;
  /**
   * How long the group coordinator waits for a silent member before handing its lease on; also
   * how long a member keeps acting as leader without a heartbeat answered. Brokers refuse values
   * below their `group.min.session.timeout.ms` (6 s by default).
   */
  sessionTimeoutMs: number;
  logger: LeaderElectionLogger;
}

/** What a member says about itself when it (re)joins the group. */
export interface LeaseClaim {
  leading: boolean;
}

const ASSIGNER_NAME = 'StewardLease';

/**
 * The member that gets the lease: the one that holds it already, so that a rebalance (a replica
 * joining or leaving) does not move it; else the first by member id. Several claims (a partition
 * healed) are settled the same way.
 */
export function chooseLeaseHolder(members: { memberId: string; claim: LeaseClaim }[]): string | undefined {
  const sorted = [...members].sort((a, b) => a.memberId.localeCompare(b.memberId));
  return (sorted.find((m) => m.claim.leading) ?? sorted[0])?.memberId;
}

function decodeClaim(member: GroupMember): LeaseClaim {
  try {
    const userData = AssignerProtocol.MemberMetadata.decode(member.memberMetadata)?.userData;
    const claim = JSON.parse(userData?.toString('utf8') ?? '{}') as Partial<LeaseClaim>;
    return { leading: claim.leading === true };
  } catch {
    return { leading: false };
  }
}

/** A partition assigner that gives every partition of the subscribed topics to one member (chooseLeaseHolder). */
export function leaseAssigner(claim: () => LeaseClaim): PartitionAssigner {
  return ({ cluster }) => ({
    name: ASSIGNER_NAME,
    version: 1,
    protocol({ topics }) {
      const userData = Buffer.from(JSON.stringify(claim()));
      return { name: ASSIGNER_NAME, metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData }) };
    },
    assign({ members, topics }): Promise<GroupMemberAssignment[]> {
      const holder = chooseLeaseHolder(members.map((m) => ({ memberId: m.memberId, claim: decodeClaim(m) })));
      const lease = Object.fromEntries(
        topics.map((topic) => [topic, cluster.findTopicPartitionMetadata(topic).map((p) => p.partitionId)]),
      );
      return Promise.resolve(
        members.map(({ memberId }) => ({
          memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: 1,
            assignment: memberId === holder ? lease : {},
            userData: Buffer.alloc(0),
          }),
        })),
      );
    },
  });
}

/**
 * Leader election through a Kafka consumer group: every candidate joins `groupId` on a lease
 * topic, and the member assigned its partition leads. Kafka does the rest: a member that stops
 * heartbeating is dropped after the session timeout and the lease goes to another one at the
 * next rebalance; a member that leaves (shutdown) hands it over at once. The assignment is sticky
 * (chooseLeaseHolder), so members joining or leaving do not move a live leader.
 *
 * The role reported is `none` while this member knows no valid assignment: before the first
 * join, after a crash, and when no heartbeat was answered for a session timeout (then the
 * coordinator may have handed the lease on; acting as leader could mean two leaders). A heartbeat
 * answered later confirms the last assignment again.
 */
export class KafkaLeaderElection {
  private current: LeadershipRole = 'none';
  /** The role from the last assignment, while the membership it came with is valid. */
  private assigned?: Exclude<LeadershipRole, 'none'>;
  private confirmedAt = 0;
  private readonly listeners = new Set<(role: LeadershipRole) => void>();
  private readonly heartbeatIntervalMs: number;
  private readonly member: SupervisedConsumer;
  private fence?: NodeJS.Timeout;

  constructor(private readonly options: KafkaLeaderElectionOptions) {
    const { kafka, topic, groupId, sessionTimeoutMs, logger } = options;
    // Several heartbeats per session, so one lost request does not cost the lease.
    this.heartbeatIntervalMs = Math.max(100, Math.floor(sessionTimeoutMs / 10));
    const lost = () => {
      this.assigned = undefined;
      this.setRole('none');
    };
    this.member = new SupervisedConsumer({
      kafka,
      config: {
        groupId,
        sessionTimeout: sessionTimeoutMs,
        // Members rejoin within a heartbeat; a slower one is not waited for longer than a dead one.
        rebalanceTimeout: sessionTimeoutMs,
        heartbeatInterval: this.heartbeatIntervalMs,
        // The lease topic stays empty: each fetch waits this long, then the member heartbeats.
        maxWaitTimeInMs: this.heartbeatIntervalMs,
        allowAutoTopicCreation: false,
        partitionAssigners: [leaseAssigner(() => ({ leading: this.current === 'leader' }))],
      },
      prepare: () => ensureTopic(kafka, topic, 1),
      subscribe: { topics: [topic] },
      run: { eachMessage: () => Promise.resolve() },
      attach: (consumer) => {
        consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
          this.confirmedAt = Date.now();
          this.assigned = (payload.memberAssignment[topic]?.length ?? 0) > 0 ? 'leader' : 'follower';
          this.setRole(this.assigned);
        });
        consumer.on(consumer.events.HEARTBEAT, () => {
          this.confirmedAt = Date.now();
          if (this.assigned) this.setRole(this.assigned);
        });
        consumer.on(consumer.events.CRASH, lost);
        consumer.on(consumer.events.STOP, lost);
      },
      onError: (error) => logger.warn({ err: error, groupId }, 'leader election: joining the consumer group failed; retrying'),
      onEnded: lost,
    });
  }

  get role(): LeadershipRole {
    return this.current;
  }

  onChange(listener: (role: LeadershipRole) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.fence) return;
    this.member.start();
    this.fence = setInterval(() => this.checkFence(), this.heartbeatIntervalMs);
    this.fence.unref();
  }

  /** Leaves the group (the lease moves at once) within a few seconds, whatever Kafka does. */
  async stop(): Promise<void> {
    clearInterval(this.fence);
    await this.member.stop();
    this.assigned = undefined;
    this.setRole('none');
  }

  private checkFence(): void {
    if (this.current === 'none' || Date.now() - this.confirmedAt <= this.options.sessionTimeoutMs) return;
    this.options.logger.warn(
      { groupId: this.options.groupId, silentMs: Date.now() - this.confirmedAt },
      'leader election: no heartbeat answered within the session timeout; this member no longer counts on its role',
    );
    this.setRole('none');
  }

  private setRole(role: LeadershipRole): void {
    if (this.current === role) return;
    const previous = this.current;
    this.current = role;
    this.options.logger.info(
      { groupId: this.options.groupId, member: this.options.memberName, role, previous },
      'leader election: role changed',
    );
    for (const listener of this.listeners) {
      try {
        listener(role);
      } catch {
        // A failing listener must not stop the election or the other listeners.
      }
    }
  }
}
