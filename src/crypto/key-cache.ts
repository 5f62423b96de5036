import { createSecretKey, type KeyObject } from 'node:crypto';

/**
 * Plaintext data keys in memory only, each for at most `maxAgeMs` and `maxUses`
 * encryptions or decryptions, whichever comes first.
 *
 * Keys are held as KeyObjects: the key material lives in native memory, outside the
 * JavaScript heap (a heap snapshot does not contain it), and is immutable, so one object
 * can serve concurrent callers without copies and without a wipe racing a caller that is
 * still encrypting with it. Evicting drops the last reference; the native memory is freed
 * with the object.
 */
export class DataKeyCache {
  private readonly entries = new Map<string, { key: KeyObject; expiresAt: number; usesLeft: number }>();

  constructor(
    private readonly limits: { readonly maxAgeMs: number; readonly maxUses: number },
    private readonly now: () => number = Date.now,
  ) {}

  /** The key, counting one use; undefined when absent, expired or used up. */
  use(keyId: string): KeyObject | undefined {
    const entry = this.entries.get(keyId);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now() || entry.usesLeft <= 0) {
      this.entries.delete(keyId);
      return undefined;
    }
    entry.usesLeft -= 1;
    return entry.key;
  }

  /**
   * Caches the key material (copied into native memory; the caller wipes its buffer) and
   * returns it as a KeyObject, counting that as its first use.
   */
  put(keyId: string, material: Buffer): KeyObject {
    const key = createSecretKey(Buffer.from(material));
    this.entries.set(keyId, { key, expiresAt: this.now() + this.limits.maxAgeMs, usesLeft: this.limits.maxUses - 1 });
    return key;
  }

  delete(keyId: string): void {
    this.entries.delete(keyId);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
