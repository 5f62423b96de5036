import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { RefundInvoiceResult } from '../activities/subscriptions';
import type { SealedCustomer } from '../src/customers/customer-types';
import type { SubscriptionFailure, SubscriptionStatus } from '../src/subscriptions/subscription-types';
import type { DunningProgress } from './dunning-contracts';

/**
 * What the subscription workflows take, answer and accept: the contract with the API and
 * the webhook path. Names and shapes are persisted in histories: public API, append only.
 * Payloads are plain JSON; money is integer minor units plus an ISO currency code; Stripe
 * event times are unix seconds, as Stripe sends them.
 */

/** The creation saga's steps, in order; each names its activity's idempotency key `<workflow id>:<step>`. */
export const SAGA_STEPS = [
  'store-customer',
  'create-stripe-customer',
  'attach-payment-method',
  'create-stripe-subscription',
  'await-first-payment',
  'provision-entitlements',
  'mark-active',
] as const;
/** A step of the saga, or `completed` once the subscription lives on as its own workflow. */
export type SagaStep = (typeof SAGA_STEPS)[number] | 'completed';

/** The compensations, each the undo of one step; also keys `<workflow id>:<compensation>`. */
export const COMPENSATIONS = {
  'store-customer': 'shred-customer',
  'create-stripe-customer': 'delete-stripe-customer',
  'attach-payment-method': 'detach-payment-method',
  'create-stripe-subscription': 'cancel-stripe-subscription',
  'provision-entitlements': 'revoke-entitlements',
} as const;

/** Failure types this workflow raises itself; matched by `type`, never renamed. */
export const SUBSCRIPTION_FAILURE = {
  firstPaymentFailed: 'FirstPaymentFailed',
  paymentWindowExpired: 'PaymentWindowExpired',
  invalidInput: 'InvalidSubscriptionInput',
  notActive: 'SubscriptionNotActive',
  alreadyCanceled: 'SubscriptionAlreadyCanceled',
  invalidCancel: 'InvalidCancelRequest',
  invalidRefund: 'InvalidRefundRequest',
  invoiceNotRefundable: 'InvoiceNotRefundable',
  refundExceedsPayment: 'RefundExceedsPayment',
} as const;

/**
 * The patch id of confirming money facts with Stripe: a signal saying an invoice was paid
 * (or the first payment failed), or that the subscription ended, is acted on only once
 * Stripe, asked in an activity, says the same. Signals travel through Temporal, where a
 * holder of the codec key could write any; Stripe's answer they cannot. Persisted in
 * histories, never renamed.
 */
export const PAYMENT_FACTS_PATCH = 'stripe-confirms-payment-facts';

/**
 * How far after Stripe's paid time a confirmed payment's event may claim to be, in seconds:
 * a genuine `invoice.paid` is created moments after, and a later claimed time would let a
 * forged signal about a real payment outrank newer events.
 */
export const PAID_EVENT_SLACK_SECONDS = 3600;

/** Events per run of {@link SubscriptionWorkflowInput} before continue-as-new, unless the input says otherwise. */
export const DEFAULT_CONTINUE_AS_NEW_AFTER_EVENTS = 500;

/** Ledgerlock's subscription ids: `sub_ll_` and 20 to 40 lower-case letters or digits. */
export const SUBSCRIPTION_ID_PATTERN = /^sub_ll_[a-z0-9]{20,40}$/;

/** The workflow id of a subscription: creation saga and entity share it (continue-as-new). */
export function subscriptionWorkflowId(subscriptionId: string): string {
  return `subscription:${subscriptionId}`;
}

export interface CreateSubscriptionInput {
  /** `sub_ll_` and 20 to 40 lower-case letters or digits: ours, opaque. */
  readonly subscriptionId: string;
  /** Personal fields arrive sealed under the customer's own data key. */
  readonly customer: SealedCustomer;
  readonly priceId: string;
  /** A Stripe `pm_` token the client obtained; card data never reaches Ledgerlock. */
  readonly paymentMethodId: string;
  readonly trialDays?: number;
  /**
   * The caller's metadata for the Stripe subscription, sealed under the customer's data key
   * (base64 Ledgerlock ciphertext of its JSON, bound to `subscriptions.metadata` of this
   * subscription): free text may carry personal data, so histories hold it only in a form an
   * erasure shreds. Opened only by the activity that sends it to Stripe.
   */
  readonly sealedMetadata?: string;
  /** Workflows started before metadata was sealed carry it in the clear; still honoured. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Service identity that asked for it (named in every audit entry of the saga). */
  readonly requestedBy: string;
  /** How long the first payment may wait for the customer (3-D Secure), in seconds: 23 h = 82 800 like Stripe's incomplete_expired. */
  readonly paymentWindowSeconds: number;
  /** Events per run of the subscription's workflow before it continues-as-new (default 500). */
  readonly continueAsNewAfterEvents?: number;
}

/** What `subscriptionState` answers, during the saga and after. */
export interface SubscriptionView {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly status: SubscriptionStatus;
  readonly sagaStep: SagaStep;
  readonly stripeSubscriptionId: string | null;
  /** The customer's default payment method at Stripe (`pm_…`). */
  readonly paymentMethodId: string;
  /** The first invoice's payment intent, for a client that confirms it (3-D Secure); null once active. */
  readonly paymentIntentId: string | null;
  readonly cancelAtPeriodEnd: boolean;
  /** Invoices whose payment failed and is not recovered: what dunning works on. */
  readonly failedInvoiceIds: readonly string[];
  /** The dunning campaigns of this subscription, one per failed invoice, as they last reported. */
  readonly dunning: readonly DunningProgress[];
  readonly failure: SubscriptionFailure | null;
}

// ---------------------------------------------------------------- creation saga

/**
 * The first payment's outcome, from the webhook path (`invoice.paid` or
 * `invoice.payment_failed` of the subscription's first invoice). `reason` is a Stripe
 * code (decline code, error code), never a message.
 */
export interface PaymentOutcome {
  readonly outcome: 'paid' | 'failed';
  readonly invoiceId: string;
  /** Unix seconds: the Stripe event's `created`. */
  readonly eventCreated: number;
  readonly eventId?: string;
  readonly reason?: string;
  /** Integer minor units, when known: what a later refund may take back. */
  readonly amountPaid?: number;
  readonly currency?: string;
}

export const paymentOutcomeSignal = defineSignal<[PaymentOutcome]>('paymentOutcome');

// ---------------------------------------------------------------- the subscription's life

/** Every webhook event carries Stripe's event id and creation time (unix seconds). */
export interface StripeEventRef {
  readonly eventId: string;
  readonly eventCreated: number;
}

/** `invoice.paid` of a renewal. */
export interface RenewalPaid extends StripeEventRef {
  readonly invoiceId: string;
  readonly amountPaid: number;
  readonly currency: string;
}

/** `invoice.payment_failed` of a renewal. `declineCode` is Stripe's code, never a message. */
export interface PaymentFailed extends StripeEventRef {
  readonly invoiceId: string;
  readonly declineCode?: string | null;
  /** Unix seconds of Stripe's next automatic attempt, if any. */
  readonly nextPaymentAttempt?: number | null;
}

/** `customer.subscription.deleted`: the subscription ended at Stripe (now, or at period end). */
export type SubscriptionCanceled = StripeEventRef;

/** The customer's default payment method changed (a `pm_` id, never card data). */
export interface PaymentMethodUpdated extends StripeEventRef {
  readonly paymentMethodId: string;
}

export const renewalPaidSignal = defineSignal<[RenewalPaid]>('renewalPaid');
export const paymentFailedSignal = defineSignal<[PaymentFailed]>('paymentFailed');
export const subscriptionCanceledSignal = defineSignal<[SubscriptionCanceled]>('subscriptionCanceled');
export const paymentMethodUpdatedSignal = defineSignal<[PaymentMethodUpdated]>('paymentMethodUpdated');

export type SubscriptionEvent =
  | ({ readonly kind: 'renewalPaid' } & RenewalPaid)
  | ({ readonly kind: 'paymentFailed' } & PaymentFailed)
  | ({ readonly kind: 'subscriptionCanceled' } & SubscriptionCanceled)
  | ({ readonly kind: 'paymentMethodUpdated' } & PaymentMethodUpdated);
export type SubscriptionEventKind = SubscriptionEvent['kind'];

export interface CancelSubscriptionRequest {
  /** True: at the end of the paid period; false: now, voiding the open invoice. */
  readonly atPeriodEnd: boolean;
  /** Service identity that asked (audit actor). */
  readonly requestedBy?: string;
}

export interface RefundInvoiceRequest {
  readonly invoiceId: string;
  /** Positive integer minor units; the whole remaining payment when absent. */
  readonly amount?: number;
  /** The caller's idempotency key: the same request again returns the first refund. */
  readonly requestId?: string;
  /** Service identity that asked (audit actor). */
  readonly requestedBy?: string;
}

export type RefundResult = RefundInvoiceResult;

export const subscriptionStateQuery = defineQuery<SubscriptionView>('subscriptionState');
export const cancelSubscriptionUpdate = defineUpdate<SubscriptionView, [CancelSubscriptionRequest]>('cancelSubscription');
export const refundInvoiceUpdate = defineUpdate<RefundResult, [RefundInvoiceRequest]>('refundInvoice');

export interface PaidInvoice {
  readonly invoiceId: string;
  /** Integer minor units; null when the event that told us did not say. */
  readonly amountPaid: number | null;
  readonly currency: string | null;
  /** Integer minor units refunded through Ledgerlock so far. */
  readonly refunded: number;
}

export interface RefundRecord extends RefundInvoiceResult {
  readonly requestId: string;
}

/** Everything the subscription's workflow carries from run to run (continue-as-new). */
export interface SubscriptionEntityState {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly stripeSubscriptionId: string;
  readonly paymentMethodId: string;
  readonly status: Extract<SubscriptionStatus, 'active' | 'past_due' | 'unpaid' | 'canceled'>;
  /** Unix seconds of the Stripe event that set `status`: an older event never changes it. */
  readonly statusSince: number;
  readonly cancelAtPeriodEnd: boolean;
  /** Per kind, the newest event applied: an older one of that kind is ignored. */
  readonly lastEventCreated: Readonly<Partial<Record<SubscriptionEventKind, number>>>;
  /** The latest event ids applied (bounded): a redelivered event is ignored. */
  readonly recentEventIds: readonly string[];
  /** Newest last, bounded. */
  readonly paidInvoices: readonly PaidInvoice[];
  /** Invoices whose payment failed and has not recovered: each gets a dunning campaign. */
  readonly failedInvoiceIds: readonly string[];
  /** The campaigns started for failed invoices, as they last reported (absent in runs before dunning). */
  readonly dunning?: readonly DunningProgress[];
  /** Newest last, bounded. */
  readonly refunds: readonly RefundRecord[];
  /** Refunds attempted so far: numbers those without a caller's request id. */
  readonly refundCount: number;
  /** Events that arrived while the saga still ran, applied first by the subscription's workflow. */
  readonly pendingEvents: readonly SubscriptionEvent[];
}

export interface SubscriptionWorkflowInput {
  readonly state: SubscriptionEntityState;
  readonly continueAsNewAfterEvents: number;
}
