import { createSecretKey, type KeyObject } from 'node:crypto';
import { dataKeyCacheHits, dataKeyCacheMisses } from '../metrics/metrics';

function miss(): undefined {
  dataKeyCacheMisses.inc();
  return undefined;
}

export interface DataKeyCacheLimits {
  readonly maxAgeMs: number;
  readonly maxUses: number;
  /** Keys held at once; the least recently used goes first. */
  readonly maxEntries: number;
}

/** What `begin()` hands out before an unwrap: `put` caches its key only if nothing was evicted meanwhile. */
export interface UnwrapTicket {
  readonly generation: number;
}

/** How often expired keys are dropped, at most. */
const SWEEP_EVERY_MS = 1_000;
/**
 * How long a destroyed key's tombstone outlives its destruction: longer than any unwrap
 * that could have read the key's row before it was destroyed (KMS calls time out well within).
 */
const TOMBSTONE_MS = 60 * 60_000;

/**
 * Plaintext data keys in memory only, each for at most `maxAgeMs` and `maxUses`
 * encryptions or decryptions, whichever comes first, and never more than `maxEntries` keys
 * at once (least recently used evicted first). A sweep drops expired keys within a second
 * or two even when nothing asks for them.
 *
 * Keys are held as KeyObjects: the key material lives in native memory, outside the
 * JavaScript heap (a heap snapshot does not contain it), and is immutable, so one object
 * can serve concurrent callers without copies and without a wipe racing a caller that is
 * still encrypting with it. Evicting drops the last reference; the native memory is freed
 * with the object.
 *
 * A destroyed key (`destroy`) leaves a tombstone, and `clear` starts a new generation: an
 * unwrap that was in flight when either happened gets its key for that one call, but the key
 * is never cached afterwards.
 */
export class DataKeyCache {
  /** In least-recently-used order: a use moves its entry to the end. */
  private readonly entries = new Map<string, { key: KeyObject; expiresAt: number; usesLeft: number }>();
  private readonly tombstones = new Map<string, number>();
  private generation = 0;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: DataKeyCacheLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), Math.min(SWEEP_EVERY_MS, limits.maxAgeMs));
    this.sweeper.unref();
  }

  /** The key, counting one use; undefined when absent, expired or used up. */
  use(keyId: string): KeyObject | undefined {
    const entry = this.entries.get(keyId);
    if (!entry) return miss();
    this.entries.delete(keyId);
    if (entry.expiresAt <= this.now() || entry.usesLeft <= 0) return miss();
    entry.usesLeft -= 1;
    this.entries.set(keyId, entry);
    dataKeyCacheHits.inc();
    return entry.key;
  }

  /** Taken before the wrapped key is read, and handed to `put` with its plaintext. */
  begin(): UnwrapTicket {
    return { generation: this.generation };
  }

  /** Whether `keyId` was destroyed in this process lately (a tombstone stands). */
  isDestroyed(keyId: string): boolean {
    return this.tombstones.has(keyId);
  }

  /**
   * Returns the key material (copied into native memory; the caller wipes its buffer) as a
   * KeyObject and caches it, counting that as its first use; unless the key was destroyed,
   * or the cache cleared, since `ticket` was taken: then it is returned but not cached.
   */
  put(keyId: string, material: Buffer, ticket: UnwrapTicket = this.begin()): KeyObject {
    const key = createSecretKey(Buffer.from(material));
    if (ticket.generation !== this.generation || this.tombstones.has(keyId)) return key;
    this.entries.delete(keyId);
    this.entries.set(keyId, { key, expiresAt: this.now() + this.limits.maxAgeMs, usesLeft: this.limits.maxUses - 1 });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.limits.maxEntries) break;
      this.entries.delete(oldest);
    }
    return key;
  }

  /** Forgets the key; it may be cached again (a key that only expired elsewhere, say). */
  delete(keyId: string): void {
    this.entries.delete(keyId);
  }

  /** Forgets the key for good: it was destroyed, so an unwrap still in flight must not cache it. */
  destroy(keyId: string): void {
    this.entries.delete(keyId);
    this.tombstones.set(keyId, this.now() + TOMBSTONE_MS);
  }

  /** Forgets every key, and every unwrap in flight forgets its key too. */
  clear(): void {
    this.entries.clear();
    this.generation += 1;
  }

  /** Drops expired keys and tombstones; runs on its own every second. */
  sweep(): void {
    const now = this.now();
    for (const [keyId, entry] of this.entries) if (entry.expiresAt <= now || entry.usesLeft <= 0) this.entries.delete(keyId);
    for (const [keyId, until] of this.tombstones) if (until <= now) this.tombstones.delete(keyId);
  }

  /** Stops the sweep (the cache keeps working, swept on use only). */
  close(): void {
    clearInterval(this.sweeper);
  }

  get size(): number {
    return this.entries.size;
  }
}
