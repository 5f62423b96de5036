import { randomBytes, randomUUID } from 'node:crypto';
import { CreateKeyCommand, DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createKeyRotationActivities } from '../../activities/key-rotation';
import { loadConfig, masterKeyAlias } from '../../src/config/config';
import { open, seal } from '../../src/crypto/ciphertext';
import { encryptionContext } from '../../src/crypto/data-keys';
import { cell } from '../../src/customers/customer-crypto';
import { createDb, type Db } from '../../src/db/database';
import { createKmsClient } from '../../src/kms/kms-client';
import { envFor, startTestServers } from '../../test/support/servers';
import type { BenchResult } from '../lib';

const KEYS = Number(process.env.BENCH_ROTATION_KEYS ?? 100_000);
/** The naive way runs at a fraction of the speed: it is timed on the first rows of the same data, as a rate. */
const NAIVE_ROWS = Math.min(KEYS, Number(process.env.BENCH_ROTATION_NAIVE_ROWS ?? 10_000));
const CONCURRENCY = 32;
const BATCH = 200;

/**
 * Rotation cost: re-wrapping every customer's data key under a new master key (KMS
 * ReEncrypt, Ledgerlock's rewrapDataKeys activity, run in a mock activity context) against
 * the naive rotation of the same data (unwrap each data key, decrypt the customer's fields,
 * generate a new data key under the new master key, encrypt the fields again, write both
 * back), on the same rows of the same database and KMS in the same run. The naive way
 * touches every record; re-wrapping touches only keys, whatever the amount of data.
 */
export async function keyRotationBenchmark(): Promise<BenchResult> {
  const { stack, stop } = await startTestServers('bench-rotation');
  const config = loadConfig(envFor(stack, { KEY_ROTATION_BATCH_SIZE: String(BATCH) }));
  const db = createDb(config.databaseUrl!, { max: 8 });
  const kms = createKmsClient(config);
  try {
    const alias = masterKeyAlias(config, 'eu');
    process.stdout.write(`  creating ${KEYS} customers with a data key and two encrypted fields each ...\n`);
    const setupStarted = Date.now();
    await createCustomers(db, kms, alias, KEYS);
    const setupSeconds = (Date.now() - setupStarted) / 1000;

    const newKeyArn = async () => (await kms.send(new CreateKeyCommand({ Description: 'bench rotation', KeySpec: 'SYMMETRIC_DEFAULT', KeyUsage: 'ENCRYPT_DECRYPT' }))).KeyMetadata!.Arn!;
    const activities = createKeyRotationActivities({ db, kms, config });
    const rotationId = `key-rotation:bench-${randomUUID()}`;
    await db.insertInto('key_rotations').values({ id: rotationId, status: 'running', stage: 'bench', requested_by: 'bench', failure: null, finished_at: null }).execute();

    const rewrapKey = await newKeyArn();
    const env = new MockActivityEnvironment();
    const rewrapStarted = process.hrtime.bigint();
    const { rewrapped } = (await env.run(activities.rewrapDataKeys, { rotationId, region: 'eu', newKeyId: rewrapKey, batchSize: BATCH })) as { rewrapped: number };
    const rewrapSeconds = Number(process.hrtime.bigint() - rewrapStarted) / 1e9;
    const verifyStarted = process.hrtime.bigint();
    const { verified } = (await env.run(activities.verifyRewrappedKeys, { rotationId, region: 'eu', newKeyId: rewrapKey, batchSize: BATCH })) as { verified: number };
    const verifySeconds = Number(process.hrtime.bigint() - verifyStarted) / 1e9;
    if (rewrapped !== KEYS || verified !== KEYS) throw new Error(`re-wrapped ${rewrapped} and verified ${verified} of ${KEYS} keys`);
    process.stdout.write(`  re-wrap: ${KEYS} keys in ${rewrapSeconds.toFixed(1)} s; verify: ${verifySeconds.toFixed(1)} s\n`);

    const naiveKey = await newKeyArn();
    const naiveStarted = process.hrtime.bigint();
    const naive = await naiveRotation(db, kms, naiveKey, NAIVE_ROWS);
    const naiveSeconds = Number(process.hrtime.bigint() - naiveStarted) / 1e9;
    if (naive !== NAIVE_ROWS) throw new Error(`naive rotation rewrote ${naive} of ${NAIVE_ROWS} customers`);
    process.stdout.write(`  naive: ${NAIVE_ROWS} customers in ${naiveSeconds.toFixed(1)} s\n`);

    const rewrapRate = KEYS / rewrapSeconds;
    const naiveRate = NAIVE_ROWS / naiveSeconds;
    return {
      name: 'key-rotation',
      description:
        `Re-wrap ${KEYS} data keys (one per customer, each customer with two encrypted fields) from the old master key to a new one with KMS ReEncrypt ` +
        `(the rotation saga's rewrapDataKeys activity, batches of ${BATCH} keys re-wrapped concurrently), against the naive rotation of the same rows ` +
        `(unwrap, decrypt the fields, new data key, encrypt, write back; ${CONCURRENCY} customers at a time; timed on the first ${NAIVE_ROWS} rows, as a rate), same database, same local KMS, same run. ` +
        `Verification (unwrap old and new, compare fingerprints) timed separately.`,
      measured: { label: 're-wrap', value: rewrapRate, unit: 'keys/s' },
      baseline: { label: 'naive re-encryption', value: naiveRate, unit: 'customers/s' },
      ratio: rewrapRate / naiveRate,
      ratioMeaning: 'how many times faster re-wrapping is than re-encrypting the data, on data this small; the naive cost grows with the data, re-wrapping does not',
      details: {
        keys: KEYS,
        rewrapSeconds: Number(rewrapSeconds.toFixed(2)),
        verifySeconds: Number(verifySeconds.toFixed(2)),
        rewrapAndVerifyKeysPerSecond: Number((KEYS / (rewrapSeconds + verifySeconds)).toFixed(1)),
        naiveRows: NAIVE_ROWS,
        naiveSeconds: Number(naiveSeconds.toFixed(2)),
        naiveSecondsForAllKeysEstimated: Number((KEYS / naiveRate).toFixed(0)),
        setupSeconds: Number(setupSeconds.toFixed(1)),
        kms: 'local-kms',
      },
    };
  } finally {
    kms.destroy();
    await db.destroy();
    await stop();
  }
}

async function createCustomers(db: Db, kms: KMSClient, alias: string, count: number): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const rows = await pool(Math.min(1000, count - start), CONCURRENCY, async () => {
      const customerId = `cust_${randomBytes(12).toString('hex')}`;
      const key = { id: randomUUID(), customer_id: customerId, region: 'eu' };
      const generated = await kms.send(new GenerateDataKeyCommand({ KeyId: alias, KeySpec: 'AES_256', EncryptionContext: encryptionContext(key) }));
      const plaintext = Buffer.from(generated.Plaintext!);
      const email = seal(plaintext, key.id, `${customerId}@example.com`, cell(customerId, 'email'));
      const name = seal(plaintext, key.id, `Customer ${customerId}`, cell(customerId, 'name'));
      plaintext.fill(0);
      return { key: { ...key, kms_key_id: generated.KeyId!, wrapped_key: Buffer.from(generated.CiphertextBlob!), status: 'active' as const }, customer: { id: customerId, region: 'eu', country: 'NL', data_key_id: key.id, email, name } };
    });
    await db.insertInto('data_keys').values(rows.map((r) => r.key)).execute();
    await db.insertInto('customers').values(rows.map((r) => r.customer)).execute();
  }
}

/** The baseline: every customer's fields decrypted and encrypted again under a new data key from the new master key. */
async function naiveRotation(db: Db, kms: KMSClient, newKeyArn: string, rows: number): Promise<number> {
  let done = 0;
  let after = '';
  for (;;) {
    const batch = await db
      .selectFrom('customers')
      .innerJoin('data_keys', 'data_keys.id', 'customers.data_key_id')
      .select(['customers.id as customerId', 'customers.email', 'customers.name', 'data_keys.id as keyId', 'data_keys.wrapped_key', 'data_keys.kms_key_id'])
      .where('data_keys.region', '=', 'eu')
      .where('customers.id', '>', after)
      .orderBy('customers.id')
      .limit(Math.min(BATCH, rows - done))
      .execute();
    if (batch.length === 0 || done >= rows) return done;
    const rewritten = await pool(batch.length, CONCURRENCY, async (i) => {
      const row = batch[i]!;
      const context = encryptionContext({ id: row.keyId, customer_id: row.customerId, region: 'eu' });
      const unwrapped = await kms.send(new DecryptCommand({ CiphertextBlob: row.wrapped_key!, KeyId: row.kms_key_id, EncryptionContext: context }));
      const oldKey = Buffer.from(unwrapped.Plaintext!);
      const email = open(oldKey, row.email, cell(row.customerId, 'email'));
      const name = open(oldKey, row.name, cell(row.customerId, 'name'));
      oldKey.fill(0);
      const fresh = await kms.send(new GenerateDataKeyCommand({ KeyId: newKeyArn, KeySpec: 'AES_256', EncryptionContext: context }));
      const newKey = Buffer.from(fresh.Plaintext!);
      const sealed = { email: seal(newKey, row.keyId, email, cell(row.customerId, 'email')), name: seal(newKey, row.keyId, name, cell(row.customerId, 'name')) };
      newKey.fill(0);
      return { row, sealed, wrapped: Buffer.from(fresh.CiphertextBlob!) };
    });
    await db.transaction().execute(async (tx) => {
      for (const { row, sealed, wrapped } of rewritten) {
        await tx.updateTable('data_keys').set({ wrapped_key: wrapped, kms_key_id: newKeyArn }).where('id', '=', row.keyId).execute();
        await tx.updateTable('customers').set({ email: sealed.email, name: sealed.name }).where('id', '=', row.customerId).execute();
      }
    });
    done += batch.length;
    after = batch.at(-1)!.customerId;
  }
}

async function pool<T>(count: number, concurrency: number, work: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      for (let i = next++; i < count; i = next++) results[i] = await work(i);
    }),
  );
  return results;
}

