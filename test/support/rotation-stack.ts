import { createHash, randomBytes } from 'node:crypto';
import { DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { masterKeyAlias, codecKeyAlias, type Config } from '../../src/config/config';
import { openProfile, sealProfile } from '../../src/customers/customer-crypto';
import { insertCustomer } from '../../src/customers/customer-dal';
import type { Db } from '../../src/db/database';
import { ownDatabase } from './own-database';
import { createKmsClient, ensureMasterKeys } from '../../src/kms/kms-client';
import { createServices, type Services } from '../../src/services';
import { quietLog } from './runtime';

/**
 * A world of its own for a rotation test: its own database and its own master keys (an
 * alias prefix of its own in the shared KMS), so rotating them disturbs no other suite,
 * and `customers` customers registered through the real envelope, half in each region.
 */
export async function rotationWorld(name: string, customers: number, overrides: Record<string, string> = {}) {
  const { env, config, owner, drop } = await ownDatabase(
    name,
    {
      KMS_KEY_ALIAS_PREFIX: `alias/${name}-${randomBytes(4).toString('hex')}`,
      TEMPORAL_TASK_QUEUE: `${name}-${process.pid}-${Date.now().toString(36)}`,
      KEY_ROTATION_GRACE_SECONDS: '2',
      DATA_KEY_CACHE_MAX_AGE_SECONDS: '1',
      KEY_ROTATION_BATCH_SIZE: '50',
      ...overrides,
    },
    4,
  );
  const kms = createKmsClient(config);
  // The shared KMS is a local one: create this world's keys as `npm start` would.
  await ensureMasterKeys(kms, { ...config, kms: { ...config.kms, local: { port: 0 } } });
  const services = createServices(config, quietLog);

  const emails = new Map<string, string>();
  const ids = Array.from({ length: customers }, (_, i) => ({ id: `cust_${randomBytes(12).toString('hex')}`, country: i % 2 === 0 ? 'NL' : 'US' }));
  for (let i = 0; i < ids.length; i += 25) {
    await Promise.all(
      ids.slice(i, i + 25).map(async ({ id, country }) => {
        const email = `${id}@example.com`;
        emails.set(id, email);
        await insertCustomer(services.db, await sealProfile(services.envelope, id, { email, name: `Name ${id}`, country }));
      }),
    );
  }

  return {
    env,
    config,
    owner,
    kms,
    services,
    emails,
    /** The ARN of the KMS key an alias points at now. */
    async aliasTarget(alias: string): Promise<string> {
      return (await kms.send(new DescribeKeyCommand({ KeyId: alias }))).KeyMetadata!.Arn!;
    },
    async keyState(keyId: string): Promise<string> {
      return (await kms.send(new DescribeKeyCommand({ KeyId: keyId }))).KeyMetadata!.KeyState!;
    },
    aliases(): string[] {
      return [...config.regions.map((r) => masterKeyAlias(config, r)), codecKeyAlias(config)];
    },
    /** SHA-256 of every data key's plaintext, unwrapped through KMS with a cold cache. */
    async fingerprints(): Promise<Map<string, string>> {
      services.dataKeys.evictAll();
      const rows = await owner.selectFrom('data_keys').select('id').where('status', '=', 'active').execute();
      const out = new Map<string, string>();
      for (let i = 0; i < rows.length; i += 50) {
        await Promise.all(
          rows.slice(i, i + 50).map(async ({ id }) => {
            const key = await services.dataKeys.key(id);
            out.set(id, createHash('sha256').update(key.export()).digest('hex'));
          }),
        );
      }
      services.dataKeys.evictAll();
      return out;
    },
    /** How many customers decrypt to what was stored, with a cold cache. */
    async decryptable(): Promise<number> {
      services.dataKeys.evictAll();
      const rows = await owner.selectFrom('customers').selectAll().execute();
      let ok = 0;
      for (let i = 0; i < rows.length; i += 50) {
        const opened = await Promise.all(rows.slice(i, i + 50).map((row) => openProfile(services.envelope, row).then((p) => p.email === emails.get(row.id), () => false)));
        ok += opened.filter(Boolean).length;
      }
      return ok;
    },
    async close(): Promise<void> {
      await services.close();
      kms.destroy();
      await drop();
    },
  };
}

export type RotationWorld = Awaited<ReturnType<typeof rotationWorld>>;
export type { Config, Db, KMSClient, Services };
