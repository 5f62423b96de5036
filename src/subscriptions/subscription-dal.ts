import { sql } from 'kysely';
import type { Db, SubscriptionRow } from '../db/database';
import type { SubscriptionFailure, SubscriptionStatus } from './subscription-types';

/** Statuses a subscription never leaves once it reached them. */
const TERMINAL: readonly SubscriptionStatus[] = ['canceled', 'failed'];

export interface SubscriptionRecord {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly status: SubscriptionStatus;
  readonly sagaStep: string;
  /** Kept when absent: only the Stripe adapter learns it. */
  readonly stripeSubscriptionId?: string | null;
  readonly cancelAtPeriodEnd?: boolean;
  /** Required with status `failed`, cleared otherwise. */
  readonly failure?: SubscriptionFailure | null;
}

/**
 * Writes what a workflow knows of its subscription. Idempotent, and never moves a
 * subscription out of `canceled` or `failed`: a retried or late write is harmless.
 */
export async function upsertSubscription(db: Db, record: SubscriptionRecord): Promise<void> {
  const failure = record.status === 'failed' ? (record.failure ?? { type: 'Unknown', reason: 'no reason recorded' }) : null;
  await db
    .insertInto('subscriptions')
    .values({
      id: record.subscriptionId,
      customer_id: record.customerId,
      price_id: record.priceId,
      stripe_subscription_id: record.stripeSubscriptionId ?? null,
      status: record.status,
      saga_step: record.sagaStep,
      failure_type: failure?.type ?? null,
      failure_reason: failure?.reason ?? null,
      cancel_at_period_end: record.cancelAtPeriodEnd ?? false,
    })
    .onConflict((oc) =>
      oc
        .column('id')
        .doUpdateSet((eb) => ({
          status: eb.ref('excluded.status'),
          saga_step: eb.ref('excluded.saga_step'),
          failure_type: eb.ref('excluded.failure_type'),
          failure_reason: eb.ref('excluded.failure_reason'),
          stripe_subscription_id: sql<string | null>`coalesce(excluded.stripe_subscription_id, subscriptions.stripe_subscription_id)`,
          ...(record.cancelAtPeriodEnd === undefined ? {} : { cancel_at_period_end: eb.ref('excluded.cancel_at_period_end') }),
          updated_at: sql<Date>`now()`,
        }))
        .where('subscriptions.status', 'not in', TERMINAL),
    )
    .execute();
}

export function findSubscription(db: Db, subscriptionId: string): Promise<SubscriptionRow | undefined> {
  return db.selectFrom('subscriptions').selectAll().where('id', '=', subscriptionId).executeTakeFirst();
}

/** Remembers the Stripe subscription as soon as Stripe answered, so a compensation finds it. */
export async function setStripeSubscriptionId(db: Db, subscriptionId: string, stripeSubscriptionId: string): Promise<boolean> {
  const result = await db
    .updateTable('subscriptions')
    .set({ stripe_subscription_id: stripeSubscriptionId, updated_at: new Date() })
    .where('id', '=', subscriptionId)
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Moves a pending subscription to active; already active (a retry) is fine. */
export async function markActive(db: Db, subscriptionId: string): Promise<boolean> {
  const result = await db
    .updateTable('subscriptions')
    .set({ status: 'active', saga_step: 'completed', failure_type: null, failure_reason: null, updated_at: new Date() })
    .where('id', '=', subscriptionId)
    .where('status', 'in', ['pending', 'active'])
    .executeTakeFirst();
  return result.numUpdatedRows > 0n;
}

/** Grants the subscription's entitlement unless one is active already. True when this call granted it. */
export async function grantEntitlement(db: Db, grant: { subscriptionId: string; customerId: string; priceId: string }): Promise<boolean> {
  const rows = await db
    .insertInto('entitlements')
    .values({ subscription_id: grant.subscriptionId, customer_id: grant.customerId, price_id: grant.priceId })
    .onConflict((oc) => oc.column('subscription_id').where('revoked_at', 'is', null).doNothing())
    .returning('id')
    .execute();
  return rows.length > 0;
}

/** Revokes the subscription's active entitlements; the number revoked (0 when none were active). */
export async function revokeEntitlements(db: Db, subscriptionId: string): Promise<number> {
  const result = await db
    .updateTable('entitlements')
    .set({ revoked_at: new Date() })
    .where('subscription_id', '=', subscriptionId)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}
