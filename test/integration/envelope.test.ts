import { randomUUID } from 'node:crypto';
import { DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { masterKeyAlias } from '../../src/config/config';
import { DataKeys } from '../../src/crypto/data-keys';
import { Envelope } from '../../src/crypto/envelope';
import { CiphertextInvalidError, DataKeyDestroyedError, KmsUnavailableError, UnknownDataKeyError } from '../../src/crypto/errors';
import { DataKeyCache } from '../../src/crypto/key-cache';
import { createDb, type Db } from '../../src/db/database';
import { createKmsClient } from '../../src/kms/kms-client';
import { freePort } from '../../src/stack/process';
import { testConfig } from '../support/stack';

const where = (rowId: string, column = 'email') => ({ table: 'customers', column, rowId });
const customer = (region = 'eu') => ({ id: `cust_${randomUUID().replace(/-/g, '')}`, region });

describe('envelope encryption against KMS and PostgreSQL', () => {
  const config = testConfig();
  let db: Db;
  let kms: KMSClient;
  let kmsCalls: string[];
  let envelope: Envelope;
  let dataKeys: DataKeys;

  beforeAll(() => {
    db = createDb(config.databaseUrl!, { max: 4 });
    kms = createKmsClient(config);
    kmsCalls = [];
    const counting = { send: (command: { constructor: { name: string } }) => (kmsCalls.push(command.constructor.name), kms.send(command as never)) };
    dataKeys = new DataKeys({ db, kms: counting as unknown as KMSClient, cache: new DataKeyCache(config.dataKeyCache), config });
    envelope = new Envelope(dataKeys);
  });
  afterAll(async () => {
    kms.destroy();
    await db.destroy();
  });

  it('encrypts and decrypts, storing the data key only wrapped', async () => {
    const c = customer();
    const blob = await envelope.encrypt(c, 'ada@example.com', where(c.id));
    expect(blob.includes(Buffer.from('ada@example.com'))).toBe(false);
    expect(await envelope.decrypt(blob, where(c.id))).toBe('ada@example.com');
    const row = await db.selectFrom('data_keys').selectAll().where('customer_id', '=', c.id).executeTakeFirstOrThrow();
    expect(row.status).toBe('active');
    expect(row.wrapped_key!.length).toBeGreaterThan(32);
  });

  it("wraps an EU customer's data key with the EU master key only, and a US customer's with the US key", async () => {
    const eu = await kms.send(new DescribeKeyCommand({ KeyId: masterKeyAlias(config, 'eu') }));
    const us = await kms.send(new DescribeKeyCommand({ KeyId: masterKeyAlias(config, 'us') }));
    const euCustomer = customer('eu');
    const usCustomer = customer('us');
    await envelope.encrypt(euCustomer, 'x', where(euCustomer.id));
    await envelope.encrypt(usCustomer, 'x', where(usCustomer.id));
    const keys = await db.selectFrom('data_keys').select(['customer_id', 'kms_key_id', 'region']).where('customer_id', 'in', [euCustomer.id, usCustomer.id]).execute();
    expect(keys.find((k) => k.customer_id === euCustomer.id)).toMatchObject({ region: 'eu', kms_key_id: eu.KeyMetadata!.Arn });
    expect(keys.find((k) => k.customer_id === usCustomer.id)).toMatchObject({ region: 'us', kms_key_id: us.KeyMetadata!.Arn });
  });

  it('refuses a ciphertext moved to another row', async () => {
    const a = customer();
    const blob = await envelope.encrypt(a, 'ada@example.com', where(a.id));
    await expect(envelope.decrypt(blob, where('cust_someoneelse000000000'))).rejects.toBeInstanceOf(CiphertextInvalidError);
  });

  it('gives one customer one active key even when asked concurrently', async () => {
    const c = customer();
    const blobs = await Promise.all(Array.from({ length: 8 }, (_, i) => envelope.encrypt(c, `v${i}`, where(c.id, `c${i}`))));
    const keys = await db.selectFrom('data_keys').select('id').where('customer_id', '=', c.id).execute();
    expect(keys).toHaveLength(1);
    for (const [i, blob] of blobs.entries()) expect(await envelope.decrypt(blob, where(c.id, `c${i}`))).toBe(`v${i}`);
  });

  it('calls KMS at most once for 10,000 records of one customer with a warm cache', async () => {
    const c = customer();
    const first = await envelope.encrypt(c, 'warm-up', where(c.id));
    kmsCalls.length = 0;
    for (let i = 0; i < 5_000; i++) {
      const blob = await envelope.encrypt(c, `record ${i}`, where(c.id, String(i)));
      await envelope.decrypt(blob, where(c.id, String(i)));
    }
    expect(kmsCalls.length).toBeLessThanOrEqual(1);
    expect(await envelope.decrypt(first, where(c.id))).toBe('warm-up');
  });

  it('unwraps through KMS when the cache is cold', async () => {
    const c = customer();
    const blob = await envelope.encrypt(c, 'cold', where(c.id));
    const cold = new Envelope(new DataKeys({ db, kms, cache: new DataKeyCache(config.dataKeyCache), config }));
    expect(await cold.decrypt(blob, where(c.id))).toBe('cold');
  });

  it('crypto-shreds: after destroying the customer keys nothing of theirs decrypts, others are unaffected', async () => {
    const erased = customer();
    const kept = customer();
    const erasedBlob = await envelope.encrypt(erased, 'gone@example.com', where(erased.id));
    const keptBlob = await envelope.encrypt(kept, 'kept@example.com', where(kept.id));
    expect(await dataKeys.destroyForCustomer(erased.id)).toHaveLength(1);
    expect(await dataKeys.destroyForCustomer(erased.id)).toEqual([]);
    await expect(envelope.decrypt(erasedBlob, where(erased.id))).rejects.toBeInstanceOf(DataKeyDestroyedError);
    // A cold process, too: nothing is left to unwrap.
    const cold = new Envelope(new DataKeys({ db, kms, cache: new DataKeyCache(config.dataKeyCache), config }));
    await expect(cold.decrypt(erasedBlob, where(erased.id))).rejects.toBeInstanceOf(DataKeyDestroyedError);
    expect(await cold.decrypt(keptBlob, where(kept.id))).toBe('kept@example.com');
  });

  it('never caches a data key that was destroyed while KMS was unwrapping it', async () => {
    const c = customer();
    const blob = await envelope.encrypt(c, 'racing@example.com', where(c.id));
    const [keyId] = (await db.selectFrom('data_keys').select('id').where('customer_id', '=', c.id).execute()).map((row) => row.id);
    // A cold process whose Decrypt is held until the erasure has destroyed the key.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let decrypting!: () => void;
    const decryptStarted = new Promise<void>((resolve) => (decrypting = resolve));
    const slow = {
      send: async (command: { constructor: { name: string } }) => {
        if (command.constructor.name === 'DecryptCommand') {
          decrypting();
          await held;
        }
        return kms.send(command as never);
      },
    };
    const cache = new DataKeyCache(config.dataKeyCache);
    const cold = new DataKeys({ db, kms: slow as unknown as KMSClient, cache, config });
    try {
      const reading = new Envelope(cold).decrypt(blob, where(c.id)).catch((err: unknown) => err);
      await decryptStarted;
      // What the destruction listener does when the erasure's NOTIFY arrives.
      expect(await dataKeys.destroyForCustomer(c.id)).toEqual([keyId]);
      cold.evict(keyId!);
      release();
      expect(await reading).toBeInstanceOf(DataKeyDestroyedError);
      expect(cache.size).toBe(0);
      expect(cache.use(keyId!)).toBeUndefined();
    } finally {
      cache.close();
    }
  });

  it('names an unknown key id', async () => {
    const c = customer();
    const blob = await envelope.encrypt(c, 'x', where(c.id));
    const unknownId = randomUUID();
    const relabelled = Buffer.concat([blob.subarray(0, 1), Buffer.from(unknownId.replace(/-/g, ''), 'hex'), blob.subarray(17)]);
    const error = await envelope.decrypt(relabelled, where(c.id)).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(UnknownDataKeyError);
    expect((error as Error).message).toContain(unknownId);
  });

  it('fails retryably when KMS is unreachable, leaving no half-written data key', async () => {
    const unreachable = createKmsClient(testConfig({ KMS_ENDPOINT: `http://127.0.0.1:${await freePort()}` }));
    const offline = new Envelope(new DataKeys({ db, kms: unreachable, cache: new DataKeyCache(config.dataKeyCache), config }));
    const c = customer();
    const error = await offline.encrypt(c, 'x', where(c.id)).catch((err: unknown) => err);
    unreachable.destroy();
    expect(error).toBeInstanceOf(KmsUnavailableError);
    expect((error as KmsUnavailableError).retryable).toBe(true);
    expect(await db.selectFrom('data_keys').select('id').where('customer_id', '=', c.id).execute()).toEqual([]);
  });
});
