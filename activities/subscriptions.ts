import { ApplicationFailure } from '@temporalio/common';
import Stripe from 'stripe';
import { appendAuditEntry } from '../src/audit/audit-dal';
import type { Envelope } from '../src/crypto/envelope';
import { findCustomer } from '../src/customers/customer-dal';
import type { Db } from '../src/db/database';
import { firstPaymentOf, invoicePaymentIntentId, type FirstPayment } from '../src/stripe/first-payment';
import { isResourceMissing, stripeFailure } from '../src/stripe/stripe-errors';
import {
  findSubscription,
  grantEntitlement,
  markActive,
  revokeEntitlements,
  setStripeSubscriptionId,
  upsertSubscription,
  type SubscriptionRecord,
} from '../src/subscriptions/subscription-dal';
import { metadataCell } from '../src/subscriptions/subscription-types';

/**
 * Subscription activities: thin adapters over PostgreSQL and Stripe. Every Stripe call
 * that changes something carries the idempotency key the workflow derived (workflow id +
 * step); an activity that makes a second call derives that call's key from it with a
 * suffix. Reads (GET) carry none: Stripe ignores keys on them.
 */

export interface SubscriptionActivityDeps {
  readonly db: Db;
  readonly stripe: Stripe;
  readonly envelope: Envelope;
}

/** Ours, for the metadata of everything we create at Stripe: an opaque id, nothing personal. */
export const SUBSCRIPTION_METADATA_KEY = 'ledgerlock_subscription_id';

/** The expansion that brings the first invoice's payments along (`invoice.payment_intent` is gone since 2025-03-31.basil). */
export const LATEST_INVOICE_PAYMENTS = 'latest_invoice.payments';

// ---------------------------------------------------------------- PostgreSQL

export type RecordSubscriptionInput = SubscriptionRecord;

export interface EntitlementInput {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
}

/** Subscription activities that stay inside our walls: registered on the general task queue. */
export function createSubscriptionActivities(deps: Pick<SubscriptionActivityDeps, 'db'>) {
  return {
    /** Upserts the subscription's status, saga step and failure; never leaves canceled or failed. */
    async recordSubscription(input: RecordSubscriptionInput): Promise<void> {
      await upsertSubscription(deps.db, input);
    },

    /** Grants the subscription's entitlement; granting it again is a no-op. */
    async provisionEntitlements(input: EntitlementInput): Promise<{ granted: boolean }> {
      if (!(await findSubscription(deps.db, input.subscriptionId))) throw subscriptionMissing(input.subscriptionId);
      return { granted: await grantEntitlement(deps.db, input) };
    },

    /** Revokes whatever the subscription grants; nothing to revoke is fine. */
    async revokeEntitlements(input: { readonly subscriptionId: string }): Promise<{ revoked: number }> {
      return { revoked: await revokeEntitlements(deps.db, input.subscriptionId) };
    },

    /** Pending to active; a retry finds it active and is fine. */
    async markSubscriptionActive(input: { readonly subscriptionId: string }): Promise<void> {
      if (!(await markActive(deps.db, input.subscriptionId))) {
        throw ApplicationFailure.create({
          type: 'SubscriptionNotPending',
          nonRetryable: true,
          message: `subscription ${input.subscriptionId} is missing or no longer pending`,
        });
      }
    },
  };
}

// ---------------------------------------------------------------- Stripe

export interface AttachPaymentMethodInput {
  readonly customerId: string;
  /** A Stripe `pm_` token from the client: card data never reaches us. */
  readonly paymentMethodId: string;
  readonly idempotencyKey: string;
}

export interface CreateStripeSubscriptionInput {
  readonly subscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly trialDays?: number;
  /** The caller's own; ours (`ledgerlock_subscription_id`) always wins. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** The caller's own, sealed under the customer's data key (see `CreateSubscriptionInput.sealedMetadata`). */
  readonly sealedMetadata?: string;
  readonly idempotencyKey: string;
}

export interface CreateStripeSubscriptionResult {
  readonly stripeSubscriptionId: string;
  readonly stripeStatus: string;
  readonly latestInvoiceId: string | null;
  /** The first invoice's payment intent, for a client that confirms the payment (3-D Secure). */
  readonly paymentIntentId: string | null;
  /** The first invoice's amount due, integer minor units of `currency`. */
  readonly amountDue: number | null;
  readonly currency: string | null;
  readonly firstPayment: FirstPayment;
  /** Stripe's decline code (or error code) when the first payment failed: a code, never a message. */
  readonly declineCode: string | null;
}

export interface CancelStripeSubscriptionInput {
  readonly subscriptionId: string;
  /** False: cancel now and void the open latest invoice; true: let it run to the end of the period. */
  readonly atPeriodEnd: boolean;
  readonly idempotencyKey: string;
}

export interface CancelStripeSubscriptionResult {
  /** `not_found`: Stripe never created it (or it is gone): nothing to cancel. */
  readonly outcome: 'canceled' | 'cancel_at_period_end' | 'already_canceled' | 'not_found';
  readonly voidedInvoiceId: string | null;
}

export interface RefundInvoiceInput {
  readonly subscriptionId: string;
  readonly invoiceId: string;
  /** Integer minor units; the whole payment when absent. */
  readonly amount?: number;
  readonly idempotencyKey: string;
}

export interface RefundInvoiceResult {
  readonly refundId: string;
  readonly invoiceId: string;
  /** Integer minor units of `currency`. */
  readonly amount: number;
  readonly currency: string;
  readonly status: string;
}

export interface ConfirmInvoicePaymentInput {
  readonly subscriptionId: string;
  readonly invoiceId: string;
  /** What the signal said; only Stripe's answer counts. */
  readonly claimed: 'paid' | 'failed';
}

/**
 * What Stripe holds about an invoice's payment: a fact a signal cannot forge, since nobody
 * but Stripe answers this activity.
 * - paid: Stripe holds it paid (amount, currency and time are Stripe's);
 * - failed: its payment was attempted and declined, or it can no longer be paid;
 * - pending: neither yet (not attempted, or waiting for 3-D Secure);
 * - not_ours: no invoice of this subscription has that id.
 */
export interface InvoicePaymentFact {
  readonly invoiceId: string;
  readonly status: 'paid' | 'failed' | 'pending' | 'not_ours';
  /** Integer minor units of `currency`, when paid. */
  readonly amountPaid: number | null;
  readonly currency: string | null;
  /** Unix seconds Stripe marked it paid. */
  readonly paidAt: number | null;
  readonly declineCode: string | null;
}

export interface SubscriptionCancellationFact {
  /** Stripe holds the subscription canceled (or expired incomplete): it has ended. */
  readonly canceled: boolean;
}

/** Subscription activities that call Stripe: registered on the rate-capped Stripe task queue only. */
export function createStripeSubscriptionActivities(deps: SubscriptionActivityDeps) {
  const stripeCustomerIdOf = async (customerId: string): Promise<string> => {
    const row = await findCustomer(deps.db, customerId);
    if (!row?.stripe_customer_id) {
      throw ApplicationFailure.create({ type: 'StripeCustomerMissing', nonRetryable: true, message: `customer ${customerId} has no Stripe customer` });
    }
    return row.stripe_customer_id;
  };

  /**
   * Our subscription's Stripe id: stored as soon as Stripe answered the create; if that
   * answer was lost, found among the customer's subscriptions by our metadata.
   */
  const stripeSubscriptionIdOf = async (subscriptionId: string): Promise<string | null> => {
    const row = await findSubscription(deps.db, subscriptionId);
    if (!row) return null;
    if (row.stripe_subscription_id) return row.stripe_subscription_id;
    const customer = await findCustomer(deps.db, row.customer_id);
    if (!customer?.stripe_customer_id) return null;
    try {
      for await (const sub of deps.stripe.subscriptions.list({ customer: customer.stripe_customer_id, status: 'all', limit: 100 })) {
        if (sub.metadata?.[SUBSCRIPTION_METADATA_KEY] === subscriptionId) return sub.id;
      }
    } catch (err) {
      if (isResourceMissing(err)) return null;
      throw stripeFailure(err, 'subscriptions.list');
    }
    return null;
  };

  /**
   * Where the new subscription's first payment stands. `default_incomplete` leaves the
   * first invoice's payment unconfirmed; the customer is signing up now and their payment
   * method is the default, so it is confirmed here (key `<key>:confirm-payment`): it
   * succeeds, is declined, or asks for 3-D Secure, which the customer completes on their
   * side while the saga waits for the webhook.
   */
  const describeCreated = async (subscription: Stripe.Subscription, idempotencyKey: string): Promise<CreateStripeSubscriptionResult> => {
    const invoice = typeof subscription.latest_invoice === 'object' ? subscription.latest_invoice : null;
    const latestInvoiceId = typeof subscription.latest_invoice === 'string' ? subscription.latest_invoice : (invoice?.id ?? null);
    const paymentIntentId = invoice ? invoicePaymentIntentId(invoice) : null;
    let firstPayment = firstPaymentOf(subscription, invoice, null);
    let declineCode: string | null = null;
    // Only the intent tells a payment waiting for 3-D Secure from one not attempted yet.
    if (firstPayment === 'pending' && paymentIntentId) {
      let intent: Stripe.PaymentIntent;
      try {
        intent = await deps.stripe.paymentIntents.retrieve(paymentIntentId);
      } catch (err) {
        throw stripeFailure(err, 'paymentIntents.retrieve');
      }
      if (intent.status === 'requires_confirmation') {
        try {
          intent = await deps.stripe.paymentIntents.confirm(paymentIntentId, {}, { idempotencyKey: `${idempotencyKey}:confirm-payment` });
        } catch (err) {
          // A declined first payment is the saga's business, not an error of this call.
          if (!(err instanceof Stripe.errors.StripeCardError)) throw stripeFailure(err, 'paymentIntents.confirm');
          return describeResult(subscription, latestInvoiceId, paymentIntentId, invoice, 'failed', err.decline_code ?? err.code ?? 'card_declined');
        }
      }
      firstPayment = firstPaymentOf(subscription, invoice, intent);
      if (firstPayment === 'failed') declineCode = intent.last_payment_error?.decline_code ?? intent.last_payment_error?.code ?? null;
    }
    return describeResult(subscription, latestInvoiceId, paymentIntentId, invoice, firstPayment, declineCode);
  };

  const alreadyCanceled = async (stripeSubscriptionId: string): Promise<boolean> => {
    const sub = await deps.stripe.subscriptions.retrieve(stripeSubscriptionId);
    return sub.status === 'canceled' || sub.status === 'incomplete_expired';
  };

  /** Voids the invoice if it is still open; one that stopped being open meanwhile is fine. */
  const voidIfOpen = async (invoice: Stripe.Invoice | string | null, idempotencyKey: string): Promise<string | null> => {
    if (!invoice || typeof invoice === 'string' || invoice.status !== 'open') return null;
    try {
      await deps.stripe.invoices.voidInvoice(invoice.id, {}, { idempotencyKey });
      return invoice.id;
    } catch (err) {
      const now = await deps.stripe.invoices.retrieve(invoice.id).catch(() => null);
      if (now && now.status !== 'open') return null;
      throw stripeFailure(err, 'invoices.voidInvoice');
    }
  };

  return {
    /**
     * Asks Stripe where an invoice's payment stands, for a workflow told by a signal that it
     * was paid or failed: signals travel through Temporal, where whoever holds the codec key
     * could write one, so money moves on Stripe's word only. An invoice of another
     * subscription (or none) is `not_ours`.
     */
    async confirmInvoicePayment(input: ConfirmInvoicePaymentInput): Promise<InvoicePaymentFact> {
      const fact = (status: InvoicePaymentFact['status'], rest: Partial<InvoicePaymentFact> = {}): InvoicePaymentFact => ({
        invoiceId: input.invoiceId,
        status,
        amountPaid: null,
        currency: null,
        paidAt: null,
        declineCode: null,
        ...rest,
      });
      const row = await findSubscription(deps.db, input.subscriptionId);
      if (!row?.stripe_subscription_id || !/^in_[A-Za-z0-9_]{1,250}$/.test(input.invoiceId)) return fact('not_ours');
      let invoice: Stripe.Invoice;
      try {
        invoice = await deps.stripe.invoices.retrieve(input.invoiceId, { expand: ['payments'] });
      } catch (err) {
        if (isResourceMissing(err)) return fact('not_ours');
        throw stripeFailure(err, 'invoices.retrieve');
      }
      const owner = invoice.parent?.subscription_details?.subscription;
      if ((typeof owner === 'string' ? owner : (owner?.id ?? null)) !== row.stripe_subscription_id) return fact('not_ours');
      if (invoice.status === 'paid') {
        return fact('paid', { amountPaid: invoice.amount_paid, currency: invoice.currency.toLowerCase(), paidAt: invoice.status_transitions?.paid_at ?? null });
      }
      if (invoice.status === 'void' || invoice.status === 'uncollectible') return fact('failed', { declineCode: invoice.status });
      const intentId = invoicePaymentIntentId(invoice);
      if (!intentId) return fact('pending');
      let intent: Stripe.PaymentIntent;
      try {
        intent = await deps.stripe.paymentIntents.retrieve(intentId);
      } catch (err) {
        throw stripeFailure(err, 'paymentIntents.retrieve');
      }
      if (intent.status === 'canceled' || (intent.status === 'requires_payment_method' && intent.last_payment_error)) {
        return fact('failed', { declineCode: intent.last_payment_error?.decline_code ?? intent.last_payment_error?.code ?? null });
      }
      return fact('pending');
    },

    /** Asks Stripe whether the subscription has ended, for a workflow told so by a signal. */
    async confirmSubscriptionCanceled(input: { readonly subscriptionId: string }): Promise<SubscriptionCancellationFact> {
      const stripeSubscriptionId = await stripeSubscriptionIdOf(input.subscriptionId);
      if (!stripeSubscriptionId) return { canceled: false };
      try {
        return { canceled: await alreadyCanceled(stripeSubscriptionId) };
      } catch (err) {
        if (isResourceMissing(err)) return { canceled: false };
        throw stripeFailure(err, 'subscriptions.retrieve');
      }
    },

    /**
     * Attaches the payment method to the customer and makes it their default for
     * invoices (the second call's key: `<key>:set-default`).
     */
    async attachPaymentMethod(input: AttachPaymentMethodInput): Promise<{ stripeCustomerId: string }> {
      const stripeCustomerId = await stripeCustomerIdOf(input.customerId);
      try {
        await deps.stripe.paymentMethods.attach(input.paymentMethodId, { customer: stripeCustomerId }, { idempotencyKey: input.idempotencyKey });
      } catch (err) {
        throw stripeFailure(err, 'paymentMethods.attach');
      }
      try {
        await deps.stripe.customers.update(
          stripeCustomerId,
          { invoice_settings: { default_payment_method: input.paymentMethodId } },
          { idempotencyKey: `${input.idempotencyKey}:set-default` },
        );
      } catch (err) {
        throw stripeFailure(err, 'customers.update');
      }
      return { stripeCustomerId };
    },

    /**
     * Detaches the payment method, but only from our customer: when attaching failed
     * because it belongs to someone else, there is nothing of ours to undo.
     */
    async detachPaymentMethod(input: AttachPaymentMethodInput): Promise<{ detached: boolean }> {
      const customer = await findCustomer(deps.db, input.customerId);
      if (!customer?.stripe_customer_id) return { detached: false };
      try {
        const method = await deps.stripe.paymentMethods.retrieve(input.paymentMethodId);
        const owner = typeof method.customer === 'string' ? method.customer : (method.customer?.id ?? null);
        if (owner !== customer.stripe_customer_id) return { detached: false };
        await deps.stripe.paymentMethods.detach(input.paymentMethodId, {}, { idempotencyKey: input.idempotencyKey });
        return { detached: true };
      } catch (err) {
        if (isResourceMissing(err)) return { detached: false };
        throw stripeFailure(err, 'paymentMethods.detach');
      }
    },

    /**
     * Creates the Stripe subscription with `payment_behavior: default_incomplete` (the
     * first payment is left to the customer's client to confirm, 3-D Secure included)
     * and says where its first payment stands. A retry after the id was stored asks
     * Stripe for the subscription instead of creating it again.
     */
    async createStripeSubscription(input: CreateStripeSubscriptionInput): Promise<CreateStripeSubscriptionResult> {
      const row = await findSubscription(deps.db, input.subscriptionId);
      if (!row) throw subscriptionMissing(input.subscriptionId);
      if (row.stripe_subscription_id) {
        let existing: Stripe.Subscription;
        try {
          existing = await deps.stripe.subscriptions.retrieve(row.stripe_subscription_id, { expand: [LATEST_INVOICE_PAYMENTS] });
        } catch (err) {
          throw stripeFailure(err, 'subscriptions.retrieve');
        }
        return describeCreated(existing, input.idempotencyKey);
      }
      const stripeCustomerId = await stripeCustomerIdOf(input.customerId);
      const metadata = input.sealedMetadata === undefined ? input.metadata : await openMetadata(deps, input);
      let subscription: Stripe.Subscription;
      try {
        subscription = await deps.stripe.subscriptions.create(
          {
            customer: stripeCustomerId,
            items: [{ price: input.priceId }],
            payment_behavior: 'default_incomplete',
            ...(input.trialDays ? { trial_period_days: input.trialDays } : {}),
            metadata: { ...metadata, [SUBSCRIPTION_METADATA_KEY]: input.subscriptionId },
            expand: [LATEST_INVOICE_PAYMENTS],
          },
          { idempotencyKey: input.idempotencyKey },
        );
      } catch (err) {
        throw stripeFailure(err, 'subscriptions.create');
      }
      await setStripeSubscriptionId(deps.db, input.subscriptionId, subscription.id);
      return describeCreated(subscription, input.idempotencyKey);
    },

    /**
     * Cancels now (voiding the open latest invoice, key `<key>:void-invoice`; no final
     * invoice, no proration) or at the end of the period. Idempotent: a subscription
     * already canceled, or never created, is done.
     */
    async cancelStripeSubscription(input: CancelStripeSubscriptionInput): Promise<CancelStripeSubscriptionResult> {
      const stripeSubscriptionId = await stripeSubscriptionIdOf(input.subscriptionId);
      if (!stripeSubscriptionId) return { outcome: 'not_found', voidedInvoiceId: null };
      try {
        if (input.atPeriodEnd) {
          await deps.stripe.subscriptions.update(stripeSubscriptionId, { cancel_at_period_end: true }, { idempotencyKey: input.idempotencyKey });
          return { outcome: 'cancel_at_period_end', voidedInvoiceId: null };
        }
        const canceled = await deps.stripe.subscriptions.cancel(
          stripeSubscriptionId,
          { invoice_now: false, prorate: false, expand: ['latest_invoice'] },
          { idempotencyKey: input.idempotencyKey },
        );
        return { outcome: 'canceled', voidedInvoiceId: await voidIfOpen(canceled.latest_invoice, `${input.idempotencyKey}:void-invoice`) };
      } catch (err) {
        if (err instanceof ApplicationFailure) throw err;
        if (isResourceMissing(err)) return { outcome: 'not_found', voidedInvoiceId: null };
        // Stripe refuses to cancel or change a canceled subscription: that is the state we want.
        if (await alreadyCanceled(stripeSubscriptionId).catch(() => false)) return { outcome: 'already_canceled', voidedInvoiceId: null };
        throw stripeFailure(err, input.atPeriodEnd ? 'subscriptions.update' : 'subscriptions.cancel');
      }
    },

    /**
     * Refunds the payment of one of this subscription's paid invoices, wholly or in part.
     * An invoice of another subscription, or one not paid, is refused for good.
     */
    async refundInvoice(input: RefundInvoiceInput): Promise<RefundInvoiceResult> {
      const row = await findSubscription(deps.db, input.subscriptionId);
      if (!row?.stripe_subscription_id) throw subscriptionMissing(input.subscriptionId);
      let invoice: Stripe.Invoice;
      try {
        invoice = await deps.stripe.invoices.retrieve(input.invoiceId, { expand: ['payments'] });
      } catch (err) {
        throw stripeFailure(err, 'invoices.retrieve');
      }
      const owner = invoice.parent?.subscription_details?.subscription;
      const ownerId = typeof owner === 'string' ? owner : (owner?.id ?? null);
      if (ownerId !== row.stripe_subscription_id) {
        throw ApplicationFailure.create({ type: 'InvoiceNotOfSubscription', nonRetryable: true, message: `invoice ${input.invoiceId} is not one of subscription ${input.subscriptionId}` });
      }
      if (invoice.status !== 'paid') {
        throw ApplicationFailure.create({ type: 'InvoiceNotPaid', nonRetryable: true, message: `invoice ${input.invoiceId} is ${invoice.status ?? 'not finalised'}, not paid` });
      }
      const paymentIntentId = invoicePaymentIntentId(invoice);
      if (!paymentIntentId) {
        throw ApplicationFailure.create({ type: 'InvoicePaymentMissing', nonRetryable: true, message: `invoice ${input.invoiceId} has no payment to refund` });
      }
      try {
        const refund = await deps.stripe.refunds.create(
          {
            payment_intent: paymentIntentId,
            ...(input.amount === undefined ? {} : { amount: input.amount }),
            metadata: { [SUBSCRIPTION_METADATA_KEY]: input.subscriptionId, ledgerlock_invoice_id: input.invoiceId },
          },
          { idempotencyKey: input.idempotencyKey },
        );
        return { refundId: refund.id, invoiceId: input.invoiceId, amount: refund.amount, currency: refund.currency, status: refund.status ?? 'pending' };
      } catch (err) {
        throw stripeFailure(err, 'refunds.create');
      }
    },
  };
}

function describeResult(
  subscription: Stripe.Subscription,
  latestInvoiceId: string | null,
  paymentIntentId: string | null,
  invoice: Stripe.Invoice | null,
  firstPayment: FirstPayment,
  declineCode: string | null,
): CreateStripeSubscriptionResult {
  return {
    stripeSubscriptionId: subscription.id,
    stripeStatus: subscription.status,
    latestInvoiceId,
    paymentIntentId,
    amountDue: invoice?.amount_due ?? null,
    currency: invoice?.currency ?? null,
    firstPayment,
    declineCode,
  };
}

function subscriptionMissing(subscriptionId: string): ApplicationFailure {
  return ApplicationFailure.create({ type: 'SubscriptionNotFound', nonRetryable: true, message: `subscription ${subscriptionId} is not recorded` });
}

/**
 * The caller's metadata, decrypted to be sent to Stripe, and that decryption audited. A
 * customer erased meanwhile has no key left: DataKeyDestroyedError, final, and the saga undoes.
 */
async function openMetadata(deps: SubscriptionActivityDeps, input: CreateStripeSubscriptionInput): Promise<Record<string, string>> {
  await appendAuditEntry(deps.db, {
    idempotencyKey: `${input.idempotencyKey}:decrypt-metadata`,
    actor: `workflow:subscription:${input.subscriptionId}`,
    action: 'customer.decrypt',
    subjectType: 'customer',
    subjectId: input.customerId,
    purpose: 'create the Stripe subscription',
    details: { fields: 'metadata', subscriptionId: input.subscriptionId },
  });
  const text = await deps.envelope.decrypt(Buffer.from(input.sealedMetadata!, 'base64'), metadataCell(input.subscriptionId));
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) {
    throw ApplicationFailure.create({ type: 'InvalidSubscriptionMetadata', nonRetryable: true, message: 'sealed metadata is not an object of strings' });
  }
  return parsed as Record<string, string>;
}
