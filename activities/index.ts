import type { KMSClient } from '@aws-sdk/client-kms';
import type Stripe from 'stripe';
import type { Config } from '../src/config/config';
import type { DataKeys } from '../src/crypto/data-keys';
import type { Envelope } from '../src/crypto/envelope';
import type { Db } from '../src/db/database';
import type { Logger } from '../src/log';
import { createAuditActivities } from './audit';
import { mappingFailures } from './failures';
import { heartbeating } from './heartbeat';
import { createCanaryActivities } from './canary';
import { createCustomerActivities, createStripeCustomerActivities } from './customers';
import { createDunningActivities, createStripeDunningActivities, type NoticeSender } from './dunning';
import { createKeyRotationActivities } from './key-rotation';
import { createStripeSubscriptionActivities, createSubscriptionActivities } from './subscriptions';

/** Dependencies every activity factory draws from, narrowed per factory with Pick<>. */
export interface ActivityDeps {
  readonly identity: string;
  /** Connected as the application role: may append to the audit trail, never rewrite it. */
  readonly db: Db;
  readonly dataKeys: DataKeys;
  readonly envelope: Envelope;
  readonly stripe: Stripe;
  readonly config: Pick<Config, 'stripeSharedFields' | 'dunning' | 'kms' | 'regions' | 'keyRotation' | 'customerRetentionDays' | 'dataKeyCache'>;
  readonly kms: KMSClient;
  /** Where dunning notices go; by default they are logged (template and opaque ids) and marked sent. */
  readonly noticeSender?: NoticeSender;
  readonly log?: Pick<Logger, 'info'>;
}

/**
 * Activities of the general task queue; workflows proxy `ReturnType<typeof createActivities>`.
 * Every one leaves through the one failure mapping (activities/failures.ts).
 */
export function createActivities(deps: ActivityDeps) {
  return mappingFailures({
    ...createCanaryActivities(deps),
    ...createAuditActivities(deps),
    ...createCustomerActivities(deps),
    ...createSubscriptionActivities(deps),
    ...createDunningActivities(deps),
    ...createKeyRotationActivities(deps),
  });
}

/** Activities that call Stripe, for the rate-capped Stripe task queue: heartbeating, and through the same failure mapping. */
export function createStripeActivities(deps: ActivityDeps) {
  return heartbeating(
    mappingFailures({
      ...createStripeCustomerActivities(deps),
      ...createStripeSubscriptionActivities(deps),
      ...createStripeDunningActivities(deps),
    }),
  );
}

export type Activities = ReturnType<typeof createActivities>;
export type StripeActivities = ReturnType<typeof createStripeActivities>;
