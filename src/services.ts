import type { KMSClient } from '@aws-sdk/client-kms';
import type { DataConverter } from '@temporalio/common';
import type Stripe from 'stripe';
import { createActorOf, type ActorOf } from './audit/audit-actor';
import type { Config } from './config/config';
import { DataKeys } from './crypto/data-keys';
import { listenForDestroyedKeys } from './crypto/destruction-listener';
import { Envelope } from './crypto/envelope';
import { DataKeyCache } from './crypto/key-cache';
import { createDb, type Db } from './db/database';
import { createKmsClient } from './kms/kms-client';
import type { Logger } from './log';
import { createStripe } from './stripe/stripe-client';
import { createDataConverter } from './temporal/data-converter';

/**
 * The long-lived clients one process needs, created once and shared by its worker, API
 * and codec server: one pool, one KMS client, one data-key cache, one data converter.
 */
export interface Services {
  /** Connected as the application's LOGIN role (DATABASE_APP_URL): it can append to the audit trail, never rewrite it. */
  readonly db: Db;
  readonly kms: KMSClient;
  readonly stripe: Stripe;
  readonly dataKeys: DataKeys;
  readonly envelope: Envelope;
  /** For clients: fails fast when KMS is down. */
  readonly dataConverter: DataConverter;
  /** For workers: waits out a KMS outage instead of failing an encode (which would end the worker). */
  readonly workerDataConverter: DataConverter;
  /** The audit actor of a token subject (a pseudonym where it looks personal); one cache for the API and the codec server. */
  readonly actorOf: ActorOf;
  close(): Promise<void>;
}

export function createServices(config: Config, log: Pick<Logger, 'warn'>): Services {
  const db = createDb(config.databaseAppUrl, { log });
  const kms = createKmsClient(config);
  const cache = new DataKeyCache(config.dataKeyCache);
  const dataKeys = new DataKeys({ db, kms, cache, config });
  const destructions = listenForDestroyedKeys(config.databaseAppUrl, dataKeys, log);
  return {
    db,
    kms,
    stripe: createStripe(config),
    dataKeys,
    envelope: new Envelope(dataKeys),
    dataConverter: createDataConverter(config, kms, { log }),
    workerDataConverter: createDataConverter(config, kms, { log, forWorker: true }),
    actorOf: createActorOf({ kms, config }),
    async close() {
      await destructions.close();
      cache.close();
      cache.clear();
      await db.destroy();
      kms.destroy();
    },
  };
}
