/**
 * Plaintext data keys in memory only, each for at most `maxAgeMs` and `maxUses`
 * encryptions or decryptions, whichever comes first. An evicted key's bytes are
 * overwritten, so a heap dump taken later does not hold it.
 */
export class DataKeyCache {
  private readonly entries = new Map<string, { key: Buffer; expiresAt: number; usesLeft: number }>();

  constructor(
    private readonly limits: { readonly maxAgeMs: number; readonly maxUses: number },
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * A copy of the key, counting one use; undefined when absent, expired or used up. The
   * caller owns the copy and wipes it when done: handing out the cached buffer itself would
   * let a concurrent eviction zero it under a caller that is still encrypting with it.
   */
  use(keyId: string): Buffer | undefined {
    const entry = this.entries.get(keyId);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now() || entry.usesLeft <= 0) {
      this.delete(keyId);
      return undefined;
    }
    entry.usesLeft -= 1;
    return Buffer.from(entry.key);
  }

  /** Keeps a copy of `key`; the caller may wipe its own. */
  put(keyId: string, key: Buffer): void {
    this.delete(keyId);
    this.entries.set(keyId, { key: Buffer.from(key), expiresAt: this.now() + this.limits.maxAgeMs, usesLeft: this.limits.maxUses });
  }

  delete(keyId: string): void {
    const entry = this.entries.get(keyId);
    if (!entry) return;
    entry.key.fill(0);
    this.entries.delete(keyId);
  }

  clear(): void {
    for (const keyId of [...this.entries.keys()]) this.delete(keyId);
  }

  get size(): number {
    return this.entries.size;
  }
}
