import { defineQuery, defineSignal } from '@temporalio/workflow';

/**
 * The dunning campaign's contract: input, signals, query. Persisted in histories: append
 * only, never rename. Times are unix milliseconds unless a name says seconds.
 */

export type DunningFinalAction = 'cancel' | 'mark_unpaid' | 'leave_past_due';

/**
 * How a campaign recovers a failed payment. Pinned when the campaign starts (it is the
 * campaign's first activity result), so a policy changed later leaves running campaigns
 * as they were.
 */
export interface DunningPolicy {
  /** A name for operators and the audit trail, e.g. `default` or `price_premium`. */
  readonly name: string;
  /** When to retry, in seconds after the failure that started the campaign; ascending. */
  readonly retryOffsetsSeconds: readonly number[];
  /** Retries at most (the failure that started the campaign is not one of them). */
  readonly maxAttempts: number;
  /** Seconds after the failure before the subscription's entitlements are suspended. */
  readonly gracePeriodSeconds: number;
  readonly finalAction: DunningFinalAction;
  /** Decline codes that end the campaign at once: retrying a lost or stolen card cannot succeed. */
  readonly hardDeclineCodes: readonly string[];
}

/** Like Stripe's Smart Retries default: four tries within three weeks. */
export const DEFAULT_DUNNING_POLICY: DunningPolicy = {
  name: 'default',
  retryOffsetsSeconds: [3 * 86_400, 7 * 86_400, 14 * 86_400, 21 * 86_400],
  maxAttempts: 4,
  gracePeriodSeconds: 7 * 86_400,
  finalAction: 'cancel',
  hardDeclineCodes: [
    'lost_card',
    'stolen_card',
    'pickup_card',
    'fraudulent',
    'restricted_card',
    'security_violation',
    'revocation_of_all_authorizations',
    'revocation_of_authorization',
    'stop_payment_order',
    'invalid_account',
    'card_not_supported',
    'do_not_honor_permanently',
  ],
};

export interface DunningInput {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly invoiceId: string;
  /** Unix seconds of the failure that started the campaign (Stripe's event time). */
  readonly failedAt: number;
  /** Stripe's decline code of that failure, when the webhook said. */
  readonly declineCode?: string | null;
}

/** Where a campaign stands. Persisted in the DunningState search attribute: append only. */
export type DunningStateName =
  | 'retrying'
  | 'suspended'
  | 'recovered'
  | 'canceled'
  | 'unpaid'
  | 'past_due'
  | 'stopped';

export interface DunningAttemptRecord {
  readonly attempt: number;
  /** Unix ms. */
  readonly at: number;
  /** Why it ran now: its scheduled time, or a new payment method. */
  readonly trigger: 'schedule' | 'payment_method_updated';
  readonly outcome: 'paid' | 'declined' | 'failed';
  readonly declineCode: string | null;
}

export interface DunningView {
  readonly subscriptionId: string;
  readonly invoiceId: string;
  readonly policy: DunningPolicy | null;
  readonly state: DunningStateName;
  /** Retries made so far. */
  readonly attempt: number;
  /** Unix ms of the next retry, or null when none is planned. */
  readonly nextAttemptAt: number | null;
  readonly suspended: boolean;
  readonly history: readonly DunningAttemptRecord[];
}

/** Failure types the campaign raises; matched by `type`, never renamed. */
export const DUNNING_FAILURE = {
  invalidInput: 'InvalidDunningInput',
  invalidPolicy: 'InvalidDunningPolicy',
  /** Stripe knows no unpaid invoice of that id for the subscription: nothing to recover. */
  invoiceNotOfSubscription: 'DunningInvoiceNotOfSubscription',
} as const;

export function dunningWorkflowId(subscriptionId: string, invoiceId: string): string {
  return `dunning:${subscriptionId}:${invoiceId}`;
}

/** The customer set a new payment method: retry now rather than at the next scheduled time. */
export const dunningPaymentMethodUpdatedSignal = defineSignal<[{ readonly paymentMethodId: string; readonly eventId?: string }]>('dunningPaymentMethodUpdated');
/** The invoice was paid (through the webhook path): the campaign has recovered it. */
export const dunningInvoicePaidSignal = defineSignal<[{ readonly eventId?: string }]>('dunningInvoicePaid');
/** The subscription ended: nothing left to recover. */
export const dunningSubscriptionCanceledSignal = defineSignal<[{ readonly eventId?: string }]>('dunningSubscriptionCanceled');

export const dunningStateQuery = defineQuery<DunningView>('dunningState');

/** What a campaign tells its subscription's workflow whenever its state changes. */
export interface DunningProgress {
  readonly invoiceId: string;
  readonly state: DunningStateName;
  readonly attempt: number;
  readonly nextAttemptAt: number | null;
  readonly suspended: boolean;
}

export const dunningProgressSignal = defineSignal<[DunningProgress]>('dunningProgress');
