import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CIPHERTEXT_V1, keyIdOf, open, seal, type CipherContext } from '../../src/crypto/ciphertext';
import { CiphertextInvalidError, CryptoError } from '../../src/crypto/errors';
import { sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer } from '../../src/customers/customer-dal';
import { createServices, type Services } from '../../src/services';
import { quietLog } from '../support/runtime';
import { testConfig } from '../support/stack';

/**
 * The record ciphertext format (v1: version | key id | IV | tag | data) against arbitrary
 * bytes and against every kind of tampering with a genuine one: the typed refusal
 * (CiphertextInvalidError, or for a well-formed header naming a key we lack, another
 * CryptoError), never garbage plaintext and never another exception.
 */

const KEY = randomBytes(32);
const KEY_ID = randomUUID();
const context = fc.record({ table: fc.string({ maxLength: 20 }), column: fc.string({ maxLength: 20 }), rowId: fc.string({ maxLength: 40 }) });
const HEADER = 1 + 16 + 12 + 16;

/** Runs `fn`, asserting it either returns or throws a CryptoError; returns what it threw. */
function refusal(fn: () => unknown): CryptoError | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(CryptoError);
    return err as CryptoError;
  }
}

describe('record ciphertext v1 (property)', () => {
  it('refuses arbitrary bytes with CiphertextInvalidError, whatever the key id or context', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), context, fc.boolean(), (bytes, ctx, leadWithVersion) => {
        const blob = Buffer.from(bytes);
        if (leadWithVersion && blob.length > 0) blob[0] = CIPHERTEXT_V1;
        expect(refusal(() => open(KEY, blob, ctx))).toBeInstanceOf(CiphertextInvalidError);
        // The key id read, when the header is long enough, is always a UUID-shaped string.
        const read = refusal(() => keyIdOf(blob));
        if (!read) expect(keyIdOf(blob)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      }),
      { numRuns: 5000 },
    );
  });

  it('opens a genuine ciphertext, and refuses it after any byte flip, truncation, extension or move to another cell', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        context,
        context,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        fc.constantFrom('flip', 'truncate', 'extend', 'move'),
        (plaintext, ctx, other, at, mask, tamper) => {
          const blob = seal(KEY, KEY_ID, plaintext, ctx);
          expect(blob.length).toBe(HEADER + Buffer.byteLength(plaintext));
          expect(keyIdOf(blob)).toBe(KEY_ID);
          expect(open(KEY, blob, ctx).toString('utf8')).toBe(plaintext);
          let altered: Buffer;
          let where: CipherContext = ctx;
          if (tamper === 'flip') {
            altered = Buffer.from(blob);
            altered[at % altered.length]! ^= mask;
          } else if (tamper === 'truncate') altered = blob.subarray(0, at % blob.length);
          else if (tamper === 'extend') altered = Buffer.concat([blob, Buffer.from([mask])]);
          else {
            fc.pre(JSON.stringify(other) !== JSON.stringify(ctx));
            altered = blob;
            where = other;
          }
          expect(refusal(() => open(KEY, altered, where))).toBeInstanceOf(CiphertextInvalidError);
        },
      ),
      { numRuns: 3000 },
    );
  });
});

describe('Envelope.decrypt over PostgreSQL and KMS (property)', () => {
  let services: Services;
  let genuine: { blob: Buffer; ctx: CipherContext; email: string };

  beforeAll(async () => {
    services = createServices(testConfig(), quietLog);
    const customerId = `cust_${randomBytes(12).toString('hex')}`;
    const email = `fuzz-${randomUUID()}@example.com`;
    const sealed = await sealProfile(services.envelope, customerId, { email, name: 'Fuzz Case', country: 'NL' });
    await insertCustomer(services.db, sealed);
    genuine = { blob: Buffer.from(sealed.fields.email!, 'base64'), ctx: { table: 'customers', column: 'email', rowId: customerId }, email };
  });
  afterAll(async () => {
    await services?.close();
  });

  it('decrypts the genuine cell, and refuses any tampered or invented ciphertext with a typed error', async () => {
    expect(await services.envelope.decrypt(genuine.blob, genuine.ctx)).toBe(genuine.email);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          // Invented: a well-formed header naming a random key id (no such data key), then anything.
          fc.tuple(fc.uuid({ version: 4 }), fc.uint8Array({ minLength: 28, maxLength: 120 })).map(([id, rest]) => Buffer.concat([Buffer.from([CIPHERTEXT_V1]), Buffer.from(id.replace(/-/g, ''), 'hex'), Buffer.from(rest)])),
          // Tampered: the genuine cell with one byte flipped (the key id included).
          fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, mask]) => {
            const altered = Buffer.from(genuine.blob);
            altered[at % altered.length]! ^= mask;
            return altered;
          }),
          fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.from(b)),
        ),
        async (blob) => {
          const outcome = await services.envelope.decrypt(blob, genuine.ctx).then(
            (plaintext) => ({ plaintext }),
            (err: unknown) => ({ err }),
          );
          if ('plaintext' in outcome) {
            // Only the genuine bytes decrypt.
            expect(blob.equals(genuine.blob)).toBe(true);
          } else {
            expect(outcome.err).toBeInstanceOf(CryptoError);
            expect(String((outcome.err as Error).message)).not.toContain(genuine.email);
          }
        },
      ),
      { numRuns: 400 },
    );
  }, 60_000);
});
