import type { PaidInvoice, SubscriptionEntityState, SubscriptionEvent } from './subscription-contracts';

/**
 * How a webhook event changes a subscription: pure, so the workflow stays deterministic
 * and the rules are tested on their own. Stripe delivers events at least once and in any
 * order, so an event is applied only when it is new (its id unseen) and not older than
 * the newest applied event of its kind; a status changes only on an event at least as new
 * as the one that set the current status.
 */

const MAX_RECENT_EVENT_IDS = 200;
const MAX_PAID_INVOICES = 50;

export type EventVerdict = 'applied' | 'duplicate' | 'stale' | 'malformed' | 'ended';

export interface ApplyOptions {
  /**
   * Invoice events are ordered per invoice, not per kind: an older failure or payment of
   * another invoice still counts (a failed invoice must reach dunning, a paid one must stay
   * refundable). Only the payment method, last writer wins, is ordered per kind. Without
   * this, the first rule: any event older than the newest of its kind was dropped, which
   * lost late invoice events. Workflows pass `patched(PER_INVOICE_ORDER_PATCH)`.
   */
  readonly perInvoiceOrder?: boolean;
}

/** The patch id of {@link ApplyOptions.perInvoiceOrder}: persisted in histories, never renamed. */
export const PER_INVOICE_ORDER_PATCH = 'subscription-events-per-invoice-order';

export function applyEvent(
  state: SubscriptionEntityState,
  event: SubscriptionEvent,
  options: ApplyOptions = { perInvoiceOrder: true },
): { state: SubscriptionEntityState; verdict: EventVerdict } {
  if (!isWellFormed(event)) return { state, verdict: 'malformed' };
  if (state.status === 'canceled') return { state, verdict: 'ended' };
  if (state.recentEventIds.includes(event.eventId)) return { state, verdict: 'duplicate' };
  const newestOfKind = state.lastEventCreated[event.kind];
  const orderedByKind = !options.perInvoiceOrder || event.kind === 'paymentMethodUpdated';
  if (orderedByKind && newestOfKind !== undefined && event.eventCreated < newestOfKind) return { state, verdict: 'stale' };

  const seen: SubscriptionEntityState = {
    ...state,
    lastEventCreated: { ...state.lastEventCreated, [event.kind]: Math.max(event.eventCreated, newestOfKind ?? 0) },
    recentEventIds: [...state.recentEventIds, event.eventId].slice(-MAX_RECENT_EVENT_IDS),
  };
  const statusMayChange = event.eventCreated >= state.statusSince;

  switch (event.kind) {
    case 'renewalPaid': {
      const failedInvoiceIds = seen.failedInvoiceIds.filter((id) => id !== event.invoiceId);
      const recovered = (seen.status === 'past_due' || seen.status === 'unpaid') && failedInvoiceIds.length === 0 && statusMayChange;
      const paid: PaidInvoice = { invoiceId: event.invoiceId, amountPaid: event.amountPaid, currency: event.currency.toLowerCase(), refunded: 0 };
      const known = seen.paidInvoices.find((p) => p.invoiceId === event.invoiceId);
      return {
        verdict: 'applied',
        state: {
          ...seen,
          failedInvoiceIds,
          paidInvoices: known ? seen.paidInvoices : [...seen.paidInvoices, paid].slice(-MAX_PAID_INVOICES),
          ...(recovered ? { status: 'active' as const, statusSince: event.eventCreated } : {}),
        },
      };
    }
    case 'paymentFailed': {
      // A failure of an invoice we know as paid is older news than its payment.
      if (seen.paidInvoices.some((p) => p.invoiceId === event.invoiceId)) return { state, verdict: 'stale' };
      return {
        verdict: 'applied',
        state: {
          ...seen,
          failedInvoiceIds: seen.failedInvoiceIds.includes(event.invoiceId) ? seen.failedInvoiceIds : [...seen.failedInvoiceIds, event.invoiceId],
          ...(statusMayChange ? { status: 'past_due' as const, statusSince: event.eventCreated } : {}),
        },
      };
    }
    case 'subscriptionCanceled':
      // Canceled is final at Stripe: no later or earlier event brings it back.
      return { verdict: 'applied', state: { ...seen, status: 'canceled', statusSince: Math.max(event.eventCreated, seen.statusSince) } };
    case 'paymentMethodUpdated':
      return { verdict: 'applied', state: { ...seen, paymentMethodId: event.paymentMethodId } };
  }
}

/** Signals cannot be refused like updates: a malformed one is ignored (and logged by the caller). */
export function isWellFormed(event: SubscriptionEvent): boolean {
  if (typeof event !== 'object' || event === null) return false;
  if (typeof event.eventId !== 'string' || event.eventId === '') return false;
  if (typeof event.eventCreated !== 'number' || !Number.isFinite(event.eventCreated) || event.eventCreated < 0) return false;
  switch (event.kind) {
    case 'renewalPaid':
      return isId(event.invoiceId) && Number.isSafeInteger(event.amountPaid) && event.amountPaid >= 0 && isCurrency(event.currency);
    case 'paymentFailed':
      return isId(event.invoiceId);
    case 'subscriptionCanceled':
      return true;
    case 'paymentMethodUpdated':
      return isId(event.paymentMethodId);
    default:
      return false;
  }
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z0-9_]{1,255}$/.test(value);
}

function isCurrency(value: unknown): value is string {
  return typeof value === 'string' && /^[A-Za-z]{3}$/.test(value);
}
