import { describe, expect, it } from 'vitest';
import { MalformedStripeEvent, routeStripeEvent, stripeEventSchema } from '../../src/webhooks/stripe-event-routing';
import { invoiceEvent, newSubscriptionId, subscriptionEvent } from '../support/stripe-events';

const sub = newSubscriptionId();
const route = (event: Record<string, unknown>) => routeStripeEvent(stripeEventSchema.parse(event));

describe('routing Stripe events to subscription workflows', () => {
  it('turns a renewal invoice.paid into renewalPaid for the subscription named in the metadata', () => {
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub, invoiceId: 'in_renewal1', created: 1_790_000_000, amount: 4200 });
    expect(route(event)).toEqual({
      kind: 'signal',
      subscriptionId: sub,
      workflowId: `subscription:${sub}`,
      signal: 'renewalPaid',
      args: { eventId: event.id, eventCreated: 1_790_000_000, invoiceId: 'in_renewal1', amountPaid: 4200, currency: 'eur' },
    });
  });

  it('turns a renewal invoice.payment_failed into paymentFailed with Stripe\'s next attempt', () => {
    const event = invoiceEvent({ type: 'invoice.payment_failed', subscriptionId: sub, invoiceId: 'in_failed1', created: 1_790_000_000 });
    expect(route(event)).toMatchObject({
      kind: 'signal',
      signal: 'paymentFailed',
      args: { eventId: event.id, eventCreated: 1_790_000_000, invoiceId: 'in_failed1', nextPaymentAttempt: 1_790_000_000 + 3 * 86_400 },
    });
  });

  it("sends the first invoice's outcome to the creation saga as paymentOutcome", () => {
    const paid = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub, invoiceId: 'in_first', billingReason: 'subscription_create', amount: 999 });
    expect(route(paid)).toMatchObject({ signal: 'paymentOutcome', args: { outcome: 'paid', invoiceId: 'in_first', amountPaid: 999, currency: 'eur', eventId: paid.id } });
    const failed = invoiceEvent({ type: 'invoice.payment_failed', subscriptionId: sub, invoiceId: 'in_first', billingReason: 'subscription_create' });
    expect(route(failed)).toMatchObject({ signal: 'paymentOutcome', args: { outcome: 'failed', invoiceId: 'in_first' } });
  });

  it('keeps nothing personal: the signal carries ids, amounts and times only', () => {
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    expect(JSON.stringify(route(event))).not.toMatch(/jenny|rosen|example\.com|cus_/i);
  });

  it('reads the metadata where API versions before basil put it', () => {
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: null });
    (event.data as { object: Record<string, unknown> }).object.subscription_details = { metadata: { ledgerlock_subscription_id: sub } };
    expect(route(event)).toMatchObject({ kind: 'signal', subscriptionId: sub });
  });

  it('turns customer.subscription.deleted into subscriptionCanceled', () => {
    const event = subscriptionEvent({ type: 'customer.subscription.deleted', subscriptionId: sub, created: 1_790_000_100 });
    expect(route(event)).toEqual({
      kind: 'signal',
      subscriptionId: sub,
      workflowId: `subscription:${sub}`,
      signal: 'subscriptionCanceled',
      args: { eventId: event.id, eventCreated: 1_790_000_100 },
    });
  });

  it('turns a changed default payment method into paymentMethodUpdated, and other updates into nothing', () => {
    const changed = subscriptionEvent({ type: 'customer.subscription.updated', subscriptionId: sub, paymentMethodId: 'pm_new', previousPaymentMethodId: 'pm_old' });
    expect(route(changed)).toMatchObject({ signal: 'paymentMethodUpdated', args: { paymentMethodId: 'pm_new' } });
    const other = subscriptionEvent({ type: 'customer.subscription.updated', subscriptionId: sub });
    expect(route(other)).toEqual({ kind: 'ignored', reason: 'no change Ledgerlock acts on', subscriptionId: sub });
  });

  it('ignores events about subscriptions that are not ours, and types it does not handle', () => {
    expect(route(invoiceEvent({ type: 'invoice.paid', subscriptionId: null }))).toEqual({ kind: 'ignored', reason: 'not a Ledgerlock subscription' });
    expect(route(invoiceEvent({ type: 'invoice.paid', subscriptionId: 'sub_ll_UPPER_not_ours' }))).toEqual({ kind: 'ignored', reason: 'not a Ledgerlock subscription' });
    expect(route(subscriptionEvent({ type: 'customer.subscription.deleted', subscriptionId: null }))).toEqual({ kind: 'ignored', reason: 'not a Ledgerlock subscription' });
    expect(route(invoiceEvent({ type: 'invoice.finalized', subscriptionId: sub }))).toEqual({ kind: 'ignored', reason: 'unhandled event type' });
  });

  it('names the field of a handled event whose object is malformed', () => {
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    (event.data as { object: Record<string, unknown> }).object.amount_paid = 'lots';
    expect(() => route(event)).toThrow(MalformedStripeEvent);
    expect(() => route(event)).toThrow(/data\.object\.amount_paid/);
  });

  it('refuses an envelope that is not a Stripe event', () => {
    expect(stripeEventSchema.safeParse({ id: 'not-an-event', object: 'event' }).success).toBe(false);
    expect(stripeEventSchema.safeParse({ ...invoiceEvent({ type: 'invoice.paid', subscriptionId: sub }), created: -1 }).success).toBe(false);
  });
});
