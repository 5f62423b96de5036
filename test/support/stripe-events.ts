import { randomBytes } from 'node:crypto';
import { signStripePayload } from '../../src/webhooks/signature';

/** Stripe events as Stripe sends them (trimmed to the fields that matter), for webhook tests. */

export const TEST_WEBHOOK_SECRET = `whsec_test${randomBytes(16).toString('hex')}`;

let counter = 0;
export function eventId(): string {
  counter += 1;
  return `evt_test${randomBytes(8).toString('hex')}${counter}`;
}

export interface InvoiceEventOptions {
  readonly type: 'invoice.paid' | 'invoice.payment_failed' | 'invoice.finalized';
  readonly subscriptionId: string | null;
  readonly invoiceId?: string;
  readonly billingReason?: string;
  readonly created?: number;
  readonly id?: string;
  readonly amount?: number;
}

export function invoiceEvent(options: InvoiceEventOptions): Record<string, unknown> {
  const paid = options.type === 'invoice.paid';
  const amount = options.amount ?? 2500;
  const created = options.created ?? Math.floor(Date.now() / 1000);
  return {
    id: options.id ?? eventId(),
    object: 'event',
    api_version: '2026-10-28.endive',
    created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: options.type,
    data: {
      object: {
        id: options.invoiceId ?? `in_test${randomBytes(8).toString('hex')}`,
        object: 'invoice',
        customer: 'cus_test123',
        customer_email: 'jenny.rosen@example.com',
        customer_name: 'Jenny Rosen',
        billing_reason: options.billingReason ?? 'subscription_cycle',
        amount_due: amount,
        amount_paid: paid ? amount : 0,
        currency: 'eur',
        status: paid ? 'paid' : 'open',
        next_payment_attempt: paid ? null : created + 3 * 86_400,
        parent:
          options.subscriptionId === null
            ? null
            : {
                type: 'subscription_details',
                quote_details: null,
                subscription_details: { metadata: { ledgerlock_subscription_id: options.subscriptionId }, subscription: 'sub_test123' },
              },
      },
    },
  };
}

export function subscriptionEvent(options: {
  readonly type: 'customer.subscription.deleted' | 'customer.subscription.updated';
  readonly subscriptionId: string | null;
  readonly paymentMethodId?: string;
  readonly previousPaymentMethodId?: string | null;
  readonly created?: number;
  readonly id?: string;
}): Record<string, unknown> {
  return {
    id: options.id ?? eventId(),
    object: 'event',
    api_version: '2026-10-28.endive',
    created: options.created ?? Math.floor(Date.now() / 1000),
    livemode: false,
    type: options.type,
    data: {
      object: {
        id: 'sub_test123',
        object: 'subscription',
        customer: 'cus_test123',
        status: options.type === 'customer.subscription.deleted' ? 'canceled' : 'active',
        default_payment_method: options.paymentMethodId ?? 'pm_card_visa',
        metadata: options.subscriptionId === null ? {} : { ledgerlock_subscription_id: options.subscriptionId },
      },
      ...(options.previousPaymentMethodId !== undefined ? { previous_attributes: { default_payment_method: options.previousPaymentMethodId } } : {}),
    },
  };
}

/** Headers of a signed delivery of `body`. */
export function signedHeaders(body: string, secret: string = TEST_WEBHOOK_SECRET, timestamp?: number): Record<string, string> {
  return { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signStripePayload(body, [secret], timestamp) };
}

export function newSubscriptionId(): string {
  return `sub_ll_${randomBytes(12).toString('hex')}`;
}
