import type Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { firstPaymentOf } from '../../src/stripe/first-payment';
import type { SubscriptionEntityState, SubscriptionEvent } from '../../workflows/subscription-contracts';
import { applyEvent } from '../../workflows/subscription-events';

const base: SubscriptionEntityState = {
  subscriptionId: 'sub_ll_0123456789abcdef01234567',
  customerId: 'cust_0123456789abcdef01234567',
  priceId: 'price_monthly',
  stripeSubscriptionId: 'sub_stripe',
  paymentMethodId: 'pm_first',
  status: 'active',
  statusSince: 100,
  cancelAtPeriodEnd: false,
  lastEventCreated: {},
  recentEventIds: [],
  paidInvoices: [{ invoiceId: 'in_first', amountPaid: 1500, currency: 'eur', refunded: 0 }],
  failedInvoiceIds: [],
  refunds: [],
  refundCount: 0,
  pendingEvents: [],
};

function run(events: SubscriptionEvent[], state = base) {
  const verdicts: string[] = [];
  for (const event of events) {
    const result = applyEvent(state, event);
    verdicts.push(result.verdict);
    state = result.state;
  }
  return { state, verdicts };
}

describe('subscription events', () => {
  it('a failed renewal makes the subscription past_due and keeps the invoice for dunning; paying it recovers', () => {
    const { state, verdicts } = run([
      { kind: 'paymentFailed', eventId: 'evt_1', eventCreated: 200, invoiceId: 'in_2' },
      { kind: 'paymentFailed', eventId: 'evt_2', eventCreated: 210, invoiceId: 'in_3' },
      { kind: 'renewalPaid', eventId: 'evt_3', eventCreated: 300, invoiceId: 'in_2', amountPaid: 1500, currency: 'EUR' },
    ]);
    expect(verdicts).toEqual(['applied', 'applied', 'applied']);
    // One failed invoice is still unpaid: still past_due.
    expect(state).toMatchObject({ status: 'past_due', failedInvoiceIds: ['in_3'], statusSince: 210 });
    expect(state.paidInvoices.at(-1)).toEqual({ invoiceId: 'in_2', amountPaid: 1500, currency: 'eur', refunded: 0 });
    const recovered = applyEvent(state, { kind: 'renewalPaid', eventId: 'evt_4', eventCreated: 310, invoiceId: 'in_3', amountPaid: 1500, currency: 'eur' });
    expect(recovered.state).toMatchObject({ status: 'active', failedInvoiceIds: [], statusSince: 310 });
  });

  it('ignores a redelivered event id and an event older than the newest of its kind', () => {
    const { state, verdicts } = run([
      { kind: 'paymentMethodUpdated', eventId: 'evt_a', eventCreated: 500, paymentMethodId: 'pm_a' },
      { kind: 'paymentMethodUpdated', eventId: 'evt_b', eventCreated: 500, paymentMethodId: 'pm_b' },
      { kind: 'paymentMethodUpdated', eventId: 'evt_a', eventCreated: 500, paymentMethodId: 'pm_a' },
      { kind: 'paymentMethodUpdated', eventId: 'evt_old', eventCreated: 499, paymentMethodId: 'pm_old' },
    ]);
    expect(verdicts).toEqual(['applied', 'applied', 'duplicate', 'stale']);
    expect(state.paymentMethodId).toBe('pm_b');
  });

  it('orders invoice events per invoice: a late failure or payment of another invoice still counts', () => {
    const { state, verdicts } = run([
      { kind: 'paymentFailed', eventId: 'evt_f5', eventCreated: 500, invoiceId: 'in_5' },
      { kind: 'renewalPaid', eventId: 'evt_p5', eventCreated: 600, invoiceId: 'in_5', amountPaid: 1500, currency: 'eur' },
      // Older than both, about other invoices: delivered late by Stripe.
      { kind: 'paymentFailed', eventId: 'evt_f4', eventCreated: 400, invoiceId: 'in_4' },
      { kind: 'renewalPaid', eventId: 'evt_p3', eventCreated: 300, invoiceId: 'in_3', amountPaid: 1500, currency: 'eur' },
    ]);
    expect(verdicts).toEqual(['applied', 'applied', 'applied', 'applied']);
    // in_4 is unpaid and reaches dunning; the status, set at 600, does not move back.
    expect(state).toMatchObject({ status: 'active', statusSince: 600, failedInvoiceIds: ['in_4'] });
    expect(state.paidInvoices.map((p) => p.invoiceId)).toEqual(['in_first', 'in_5', 'in_3']);
    expect(state.lastEventCreated).toEqual({ paymentFailed: 500, renewalPaid: 600 });
  });

  it('keeps the first rule for histories recorded before the per-invoice patch: older than the newest of its kind is stale', () => {
    const events: SubscriptionEvent[] = [
      { kind: 'paymentFailed', eventId: 'evt_f5', eventCreated: 500, invoiceId: 'in_5' },
      { kind: 'paymentFailed', eventId: 'evt_f4', eventCreated: 400, invoiceId: 'in_4' },
    ];
    let state = base;
    const verdicts = events.map((event) => {
      const result = applyEvent(state, event, { perInvoiceOrder: false });
      state = result.state;
      return result.verdict;
    });
    expect(verdicts).toEqual(['applied', 'stale']);
    expect(state.failedInvoiceIds).toEqual(['in_5']);
  });

  it('never moves the status back on an event older than the one that set it', () => {
    const paidLate = { ...base, statusSince: 1_000 };
    const { state, verdicts } = run([{ kind: 'paymentFailed', eventId: 'evt_late', eventCreated: 900, invoiceId: 'in_9' }], paidLate);
    expect(verdicts).toEqual(['applied']);
    expect(state).toMatchObject({ status: 'active', failedInvoiceIds: ['in_9'] });
    // A failure of an invoice already paid is older news than its payment.
    expect(applyEvent(base, { kind: 'paymentFailed', eventId: 'evt_x', eventCreated: 2_000, invoiceId: 'in_first' }).verdict).toBe('stale');
  });

  it('ends on cancellation and applies nothing after it', () => {
    const { state, verdicts } = run([
      { kind: 'subscriptionCanceled', eventId: 'evt_c', eventCreated: 50 },
      { kind: 'renewalPaid', eventId: 'evt_r', eventCreated: 60, invoiceId: 'in_r', amountPaid: 1, currency: 'eur' },
    ]);
    expect(verdicts).toEqual(['applied', 'ended']);
    expect(state.status).toBe('canceled');
  });

  it('ignores malformed events instead of failing the workflow', () => {
    const malformed = [
      { kind: 'renewalPaid', eventId: '', eventCreated: 1, invoiceId: 'in_1', amountPaid: 1, currency: 'eur' },
      { kind: 'renewalPaid', eventId: 'evt_1', eventCreated: Number.NaN, invoiceId: 'in_1', amountPaid: 1, currency: 'eur' },
      { kind: 'renewalPaid', eventId: 'evt_1', eventCreated: 1, invoiceId: 'in_1', amountPaid: 1.5, currency: 'eur' },
      { kind: 'paymentMethodUpdated', eventId: 'evt_1', eventCreated: 1, paymentMethodId: 'pm with spaces' },
      { kind: 'somethingElse', eventId: 'evt_1', eventCreated: 1 },
    ] as unknown as SubscriptionEvent[];
    for (const event of malformed) expect(applyEvent(base, event)).toEqual({ state: base, verdict: 'malformed' });
  });

  it('keeps the bounded lists bounded', () => {
    const events: SubscriptionEvent[] = Array.from({ length: 260 }, (_, i) => ({
      kind: 'renewalPaid',
      eventId: `evt_${i}`,
      eventCreated: 1_000 + i,
      invoiceId: `in_${i}`,
      amountPaid: 100,
      currency: 'eur',
    }));
    const { state } = run(events);
    expect(state.recentEventIds).toHaveLength(200);
    expect(state.recentEventIds.at(-1)).toBe('evt_259');
    expect(state.paidInvoices).toHaveLength(50);
    expect(state.paidInvoices.at(-1)?.invoiceId).toBe('in_259');
  });
});

describe('first payment of a new subscription', () => {
  const subscription = (status: string) => ({ status }) as Stripe.Subscription;
  const invoice = (status: string) => ({ status, payments: { data: [] } }) as unknown as Stripe.Invoice;
  const intent = (status: string, declined = false) => ({ status, last_payment_error: declined ? { code: 'card_declined' } : null }) as Stripe.PaymentIntent;

  it.each([
    ['an active subscription', subscription('active'), null, null, 'paid'],
    ['a trial', subscription('trialing'), null, null, 'paid'],
    ['a paid invoice', subscription('incomplete'), invoice('paid'), null, 'paid'],
    ['a voided invoice', subscription('incomplete'), invoice('void'), null, 'failed'],
    ['an expired subscription', subscription('incomplete_expired'), invoice('open'), null, 'failed'],
    ['a payment awaiting 3-D Secure', subscription('incomplete'), invoice('open'), intent('requires_action'), 'requires_action'],
    ['a payment not attempted yet', subscription('incomplete'), invoice('open'), intent('requires_payment_method'), 'pending'],
    ['a declined payment', subscription('incomplete'), invoice('open'), intent('requires_payment_method', true), 'failed'],
    ['a processing payment', subscription('incomplete'), invoice('open'), intent('processing'), 'pending'],
    ['a succeeded payment', subscription('incomplete'), invoice('open'), intent('succeeded'), 'paid'],
  ] as const)('%s → %s', (_, sub, inv, pi, expected) => {
    expect(firstPaymentOf(sub, inv, pi)).toBe(expected);
  });
});
