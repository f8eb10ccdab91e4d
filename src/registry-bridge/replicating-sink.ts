import { type CatalogRecord, type CatalogTopicState, sameHealth, sameRegistration } from './catalog-records.js';
import type { Registration, RegistrationSink } from './registration.js';

/**
 * The leader's sink: every call from a source is applied to the local catalog at once (the
 * leader's own views never wait for Kafka) and turned into catalog-topic records for the other
 * replicas. Only what differs from `expected` (what the topic holds once the sends so far land)
 * is published, so a full resync of 25,000 unchanged registrations publishes nothing, and one
 * after a failover publishes only what changed while no replica was reading.
 */
export class ReplicatingSink implements RegistrationSink {
  constructor(
    private readonly catalog: RegistrationSink,
    readonly expected: CatalogTopicState,
    private readonly publish: (records: CatalogRecord[]) => void,
  ) {}

  upsert(registration: Registration): void {
    this.catalog.upsert(registration);
    if (sameRegistration(this.expected.registration(registration.source, registration.key), registration)) return;
    this.send([{ type: 'registration', source: registration.source, key: registration.key, registration }]);
  }

  remove(source: string, key: string): void {
    this.catalog.remove(source, key);
    if (this.expected.registration(source, key)) this.send([{ type: 'registration', source, key, registration: null }]);
  }

  replaceAll(source: string, registrations: Registration[]): void {
    this.catalog.replaceAll(source, registrations);
    this.send(replaceAllRecords(this.expected, source, registrations));
  }

  sourceHealth(source: string, health: { reachable: boolean; error?: string }): void {
    this.catalog.sourceHealth(source, health);
    if (!sameHealth(this.expected.health(source), health)) this.send([{ type: 'health', source, health }]);
  }

  /** Unreadable registry data concerns the replica reading it: counted here, not replicated. */
  badInput(source: string, kind: string, detail: string): void {
    this.catalog.badInput(source, kind, detail);
  }

  /**
   * Removes, locally and from the topic, every source the topic holds that this leader does not
   * read: a replica configured with fewer registries than the previous leader must not leave their
   * entries in the catalog for ever, never refreshed.
   */
  retireSourcesExcept(readHere: string[], dropLocally: (source: string) => void): void {
    for (const source of this.expected.sources()) {
      if (readHere.includes(source)) continue;
      dropLocally(source);
      const tombstones: CatalogRecord[] = [...this.expected.registrationsOf(source).keys()].map((key) => ({
        type: 'registration',
        source,
        key,
        registration: null,
      }));
      this.send([...tombstones, { type: 'health', source, health: null }]);
    }
  }

  /** Sends records about the topic itself (e.g. which replica leads). */
  send(records: CatalogRecord[]): void {
    if (records.length === 0) return;
    for (const record of records) this.expected.apply(record);
    this.publish(records);
  }
}

/** The records that turn what `expected` holds for `source` into `registrations`: tombstones, then upserts. */
export function replaceAllRecords(expected: CatalogTopicState, source: string, registrations: Registration[]): CatalogRecord[] {
  const next = new Map(registrations.map((r) => [r.key, r]));
  const records: CatalogRecord[] = [];
  for (const key of expected.registrationsOf(source).keys()) {
    if (!next.has(key)) records.push({ type: 'registration', source, key, registration: null });
  }
  for (const registration of next.values()) {
    if (!sameRegistration(expected.registration(source, registration.key), registration)) {
      records.push({ type: 'registration', source, key: registration.key, registration });
    }
  }
  return records;
}
