import type { CipherContext } from '../crypto/ciphertext';

/**
 * A subscription's lifecycle as Ledgerlock records it (PostgreSQL, workflow state, the
 * BillingStatus search attribute). Persisted and shown to API callers: append only.
 * - pending: the creation saga runs (up to the first payment);
 * - active: paid and entitled;
 * - past_due: a renewal payment failed; dunning decides what follows;
 * - unpaid: dunning ended without payment and its policy says to mark it so (entitlements suspended);
 * - canceled: ended at Stripe, entitlements revoked;
 * - failed: the creation saga failed and undid what it had done.
 */
export const SUBSCRIPTION_STATUSES = ['pending', 'active', 'past_due', 'canceled', 'failed', 'unpaid'] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** Why a subscription failed: a failure `type` callers can match on, and a reason without personal data. */
export interface SubscriptionFailure {
  readonly type: string;
  readonly reason: string;
}

/** Where a subscription's sealed metadata is bound: its ciphertext opens for this subscription only. */
export function metadataCell(subscriptionId: string): CipherContext {
  return { table: 'subscriptions', column: 'metadata', rowId: subscriptionId };
}
