import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { keyIdOf, open, seal, type CipherContext } from '../../src/crypto/ciphertext';
import { CiphertextInvalidError } from '../../src/crypto/errors';
import { DataKeyCache } from '../../src/crypto/key-cache';
import { regionForCountry } from '../../src/domain/residency';

const key = randomBytes(32);
const keyId = randomUUID();
const where: CipherContext = { table: 'customers', column: 'email', rowId: 'cust_abc' };

function flip(blob: Buffer, index: number): Buffer {
  const copy = Buffer.from(blob);
  copy[index]! ^= 0x01;
  return copy;
}

describe('Ledgerlock v1 ciphertext', () => {
  const blob = seal(key, keyId, Buffer.from('ada@example.com'), where);

  it('round-trips and names its key id', () => {
    expect(open(key, blob, where).toString()).toBe('ada@example.com');
    expect(keyIdOf(blob)).toBe(keyId);
    expect(blob[0]).toBe(1);
  });

  it('uses a fresh IV each time', () => {
    const again = seal(key, keyId, Buffer.from('ada@example.com'), where);
    expect(again.subarray(17, 29)).not.toEqual(blob.subarray(17, 29));
    expect(again).not.toEqual(blob);
  });

  it.each([
    ['the IV', 20],
    ['the tag', 35],
    ['the ciphertext', blob.length - 1],
  ])('refuses a tampered %s with a typed error', (_, index) => {
    expect(() => open(key, flip(blob, index), where)).toThrow(CiphertextInvalidError);
  });

  it('refuses a ciphertext moved to another row, column or table', () => {
    expect(() => open(key, blob, { ...where, rowId: 'cust_other' })).toThrow(CiphertextInvalidError);
    expect(() => open(key, blob, { ...where, column: 'name' })).toThrow(CiphertextInvalidError);
    expect(() => open(key, blob, { ...where, table: 'audit_log' })).toThrow(CiphertextInvalidError);
  });

  it('refuses a ciphertext relabelled with another key id', () => {
    const relabelled = Buffer.concat([blob.subarray(0, 1), Buffer.from(randomUUID().replace(/-/g, ''), 'hex'), blob.subarray(17)]);
    expect(() => open(key, relabelled, where)).toThrow(CiphertextInvalidError);
  });

  it('refuses an unknown version or a truncated blob', () => {
    expect(() => keyIdOf(flip(blob, 0))).toThrow(CiphertextInvalidError);
    expect(() => keyIdOf(blob.subarray(0, 20))).toThrow(CiphertextInvalidError);
  });
});

describe('DataKeyCache', () => {
  const material = (byte: number) => Buffer.alloc(32, byte);
  const bytesOf = (key: KeyObject | undefined) => key?.export();

  it('serves a key at most maxUses times, counting the put as the first', () => {
    const cache = new DataKeyCache({ maxAgeMs: 60_000, maxUses: 3, maxEntries: 10 });
    expect(bytesOf(cache.put('k', material(7)))).toEqual(material(7));
    expect(bytesOf(cache.use('k'))).toEqual(material(7));
    expect(bytesOf(cache.use('k'))).toEqual(material(7));
    expect(cache.use('k')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('forgets a key after maxAge', () => {
    let now = 1_000;
    const cache = new DataKeyCache({ maxAgeMs: 100, maxUses: 10, maxEntries: 10 }, () => now);
    cache.put('k', material(1));
    now += 99;
    expect(cache.use('k')).toBeDefined();
    now += 1;
    expect(cache.use('k')).toBeUndefined();
  });

  it('copies the material out of the caller buffer, so wiping that buffer leaves the cached key intact', () => {
    const cache = new DataKeyCache({ maxAgeMs: 60_000, maxUses: 10, maxEntries: 10 });
    const buffer = material(9);
    cache.put('k', buffer);
    buffer.fill(0);
    expect(bytesOf(cache.use('k'))).toEqual(material(9));
    cache.delete('k');
    expect(cache.use('k')).toBeUndefined();
  });

  it('holds at most maxEntries keys, evicting the least recently used first', () => {
    const cache = new DataKeyCache({ maxAgeMs: 60_000, maxUses: 100, maxEntries: 2 });
    cache.put('a', material(1));
    cache.put('b', material(2));
    expect(cache.use('a')).toBeDefined(); // a is now the most recently used
    cache.put('c', material(3));
    expect(cache.size).toBe(2);
    expect(cache.use('b')).toBeUndefined();
    expect(bytesOf(cache.use('a'))).toEqual(material(1));
    expect(bytesOf(cache.use('c'))).toEqual(material(3));
  });

  it('drops an expired key on its own, though nothing asks for it again', async () => {
    const cache = new DataKeyCache({ maxAgeMs: 50, maxUses: 10, maxEntries: 10 });
    try {
      cache.put('k', material(4));
      expect(cache.size).toBe(1);
      await expect.poll(() => cache.size, { timeout: 5_000, interval: 20 }).toBe(0);
    } finally {
      cache.close();
    }
  });

  it('sweeps expired and used-up keys and keeps live ones', () => {
    let now = 0;
    const cache = new DataKeyCache({ maxAgeMs: 100, maxUses: 1, maxEntries: 10 }, () => now);
    cache.close();
    cache.put('spent', material(1)); // its put was its one use
    const live = new DataKeyCache({ maxAgeMs: 100, maxUses: 5, maxEntries: 10 }, () => now);
    live.close();
    live.put('old', material(2));
    now = 60;
    live.put('young', material(3));
    now = 100;
    cache.sweep();
    live.sweep();
    expect(cache.size).toBe(0);
    expect(live.size).toBe(1);
    expect(live.use('young')).toBeDefined();
  });

  it('never caches a key destroyed while it was being unwrapped, nor one unwrapped before a clear', () => {
    const cache = new DataKeyCache({ maxAgeMs: 60_000, maxUses: 10, maxEntries: 10 });
    cache.close();
    const ticket = cache.begin();
    cache.destroy('k');
    expect(bytesOf(cache.put('k', material(5), ticket))).toEqual(material(5)); // the caller still gets its key
    expect(cache.size).toBe(0);
    expect(cache.isDestroyed('k')).toBe(true);
    expect(cache.put('k', material(5))).toBeDefined();
    expect(cache.use('k')).toBeUndefined(); // the tombstone outlives the unwrap

    const before = cache.begin();
    cache.clear();
    cache.put('j', material(6), before);
    expect(cache.use('j')).toBeUndefined();
    cache.put('j', material(6), cache.begin());
    expect(cache.use('j')).toBeDefined();
  });
});

describe('regionForCountry', () => {
  it('keeps the EEA, Switzerland and the UK in the EU region, the rest in the US region', () => {
    expect(['DE', 'fr', 'IE', 'NO', 'CH', 'GB'].map(regionForCountry)).toEqual(['eu', 'eu', 'eu', 'eu', 'eu', 'eu']);
    expect(['US', 'CA', 'BR', 'JP'].map(regionForCountry)).toEqual(['us', 'us', 'us', 'us']);
  });
});
