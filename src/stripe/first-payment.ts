import type Stripe from 'stripe';

/**
 * Where a new subscription's first payment stands, as the creation saga needs it:
 * - paid: nothing to wait for (paid, or nothing to pay: a trial, a zero amount);
 * - requires_action: the customer must authenticate (3-D Secure) before it can succeed;
 * - pending: not attempted or not settled yet (created with `default_incomplete`, the
 *   payment is confirmed by the customer's client, or it is processing);
 * - failed: attempted and declined, or the invoice can no longer be paid.
 * The saga waits for the webhook's word on anything but paid and failed.
 */
export type FirstPayment = 'paid' | 'requires_action' | 'pending' | 'failed';

/** The payment intent behind an invoice, from its `payments` (API 2025-03-31.basil and later). */
export function invoicePaymentIntentId(invoice: Stripe.Invoice): string | null {
  const payments = invoice.payments?.data ?? [];
  const payment = payments.find((p) => p.is_default) ?? payments[0];
  const intent = payment?.payment?.payment_intent;
  if (!intent) return null;
  return typeof intent === 'string' ? intent : intent.id;
}

export function firstPaymentOf(subscription: Stripe.Subscription, invoice: Stripe.Invoice | null, intent: Stripe.PaymentIntent | null): FirstPayment {
  if (subscription.status === 'active' || subscription.status === 'trialing') return 'paid';
  if (subscription.status === 'incomplete_expired' || subscription.status === 'canceled') return 'failed';
  if (invoice) {
    if (invoice.status === 'paid') return 'paid';
    if (invoice.status === 'void' || invoice.status === 'uncollectible') return 'failed';
    if (invoice.payments?.data.some((p) => p.status === 'paid')) return 'paid';
  }
  switch (intent?.status) {
    case 'succeeded':
      return 'paid';
    case 'requires_action':
      return 'requires_action';
    case 'canceled':
      return 'failed';
    case 'requires_payment_method':
      // Without an error it was never attempted; with one, the attempt was declined.
      return intent.last_payment_error ? 'failed' : 'pending';
    default:
      return 'pending';
  }
}
