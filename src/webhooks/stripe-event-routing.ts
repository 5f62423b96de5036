import { z } from 'zod';
import { stripeId } from '../stripe/stripe-ids';
import { SUBSCRIPTION_METADATA_KEY } from '../../activities/subscriptions';
import {
  paymentFailedSignal,
  paymentMethodUpdatedSignal,
  paymentOutcomeSignal,
  renewalPaidSignal,
  subscriptionCanceledSignal,
  SUBSCRIPTION_ID_PATTERN,
  subscriptionWorkflowId,
  type PaymentFailed,
  type PaymentMethodUpdated,
  type PaymentOutcome,
  type RenewalPaid,
  type SubscriptionCanceled,
} from '../../workflows/subscription-contracts';

/**
 * What a verified Stripe event means to Ledgerlock: a signal to one subscription's
 * workflow, or nothing. Pure: the route records the answer, the relay delivers it.
 *
 * The workflow is found through the metadata Ledgerlock writes on every Stripe
 * subscription (`ledgerlock_subscription_id`); invoices carry it in
 * `parent.subscription_details.metadata`. Nothing else of the event is kept: the signal's
 * arguments are ids, amounts, codes and times, never personal data (an invoice also
 * carries the customer's name, email and address, which stay at Stripe).
 */


/** The event types that become signals; every other verified event is recorded and ignored. */
export const HANDLED_EVENT_TYPES = ['invoice.paid', 'invoice.payment_failed', 'customer.subscription.deleted', 'customer.subscription.updated'] as const;

export type SignalName =
  | typeof paymentOutcomeSignal.name
  | typeof renewalPaidSignal.name
  | typeof paymentFailedSignal.name
  | typeof subscriptionCanceledSignal.name
  | typeof paymentMethodUpdatedSignal.name;

export type SignalArgs = PaymentOutcome | RenewalPaid | PaymentFailed | SubscriptionCanceled | PaymentMethodUpdated;

export type StripeEventRoute =
  | {
      readonly kind: 'signal';
      readonly subscriptionId: string;
      readonly workflowId: string;
      readonly signal: SignalName;
      readonly args: SignalArgs;
    }
  | { readonly kind: 'ignored'; readonly reason: IgnoreReason; readonly subscriptionId?: string };

export type IgnoreReason = 'unhandled event type' | 'not a Ledgerlock subscription' | 'no change Ledgerlock acts on';

/** The envelope every Stripe event has; `data.object` is checked per type below. */
export const stripeEventSchema = z.object({
  id: stripeId('evt', 'event'),
  object: z.literal('event'),
  type: z.string().regex(/^[a-z_]+(\.[a-z_]+)+$/, 'must be a Stripe event type'),
  created: z.number().int().nonnegative(),
  livemode: z.boolean(),
  data: z.object({
    object: z.record(z.string(), z.unknown()),
    previous_attributes: z.record(z.string(), z.unknown()).optional(),
  }),
});

export type StripeEventEnvelope = z.infer<typeof stripeEventSchema>;

const metadata = z.record(z.string(), z.string()).nullish();

const invoiceSchema = z.object({
  id: stripeId('in', 'invoice'),
  billing_reason: z.string().nullish(),
  amount_paid: z.number().int().nonnegative(),
  currency: z.string().regex(/^[a-z]{3}$/i),
  next_payment_attempt: z.number().int().nullish(),
  parent: z.object({ subscription_details: z.object({ metadata }).nullish() }).nullish(),
  // Before API version 2025-03-31.basil the subscription's metadata sat here.
  subscription_details: z.object({ metadata }).nullish(),
});

const subscriptionSchema = z.object({
  id: stripeId('sub', 'subscription'),
  metadata,
  default_payment_method: z.union([stripeId('pm', 'payment method'), z.object({ id: stripeId('pm', 'payment method') }), z.null()]).optional(),
});

/** Thrown for a verified event whose object does not have the shape its type promises. */
export class MalformedStripeEvent extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'MalformedStripeEvent';
  }
}

export function routeStripeEvent(event: StripeEventEnvelope): StripeEventRoute {
  const ref = { eventId: event.id, eventCreated: event.created };
  switch (event.type) {
    case 'invoice.paid':
    case 'invoice.payment_failed': {
      const invoice = parseObject(invoiceSchema, event);
      const subscriptionId = ours(invoice.parent?.subscription_details?.metadata ?? invoice.subscription_details?.metadata);
      if (!subscriptionId) return { kind: 'ignored', reason: 'not a Ledgerlock subscription' };
      const first = invoice.billing_reason === 'subscription_create';
      const paid = event.type === 'invoice.paid';
      if (first) {
        const args: PaymentOutcome = paid
          ? { outcome: 'paid', invoiceId: invoice.id, ...ref, amountPaid: invoice.amount_paid, currency: invoice.currency.toLowerCase() }
          : { outcome: 'failed', invoiceId: invoice.id, ...ref };
        return signal(subscriptionId, paymentOutcomeSignal.name, args);
      }
      if (paid) {
        const args: RenewalPaid = { ...ref, invoiceId: invoice.id, amountPaid: invoice.amount_paid, currency: invoice.currency.toLowerCase() };
        return signal(subscriptionId, renewalPaidSignal.name, args);
      }
      const args: PaymentFailed = { ...ref, invoiceId: invoice.id, nextPaymentAttempt: invoice.next_payment_attempt ?? null };
      return signal(subscriptionId, paymentFailedSignal.name, args);
    }
    case 'customer.subscription.deleted': {
      const subscription = parseObject(subscriptionSchema, event);
      const subscriptionId = ours(subscription.metadata);
      if (!subscriptionId) return { kind: 'ignored', reason: 'not a Ledgerlock subscription' };
      const args: SubscriptionCanceled = ref;
      return signal(subscriptionId, subscriptionCanceledSignal.name, args);
    }
    case 'customer.subscription.updated': {
      const subscription = parseObject(subscriptionSchema, event);
      const subscriptionId = ours(subscription.metadata);
      if (!subscriptionId) return { kind: 'ignored', reason: 'not a Ledgerlock subscription' };
      const changed = event.data.previous_attributes !== undefined && 'default_payment_method' in event.data.previous_attributes;
      const method = subscription.default_payment_method;
      if (!changed || !method) return { kind: 'ignored', reason: 'no change Ledgerlock acts on', subscriptionId };
      const args: PaymentMethodUpdated = { ...ref, paymentMethodId: typeof method === 'string' ? method : method.id };
      return signal(subscriptionId, paymentMethodUpdatedSignal.name, args);
    }
    default:
      return { kind: 'ignored', reason: 'unhandled event type' };
  }
}

function signal(subscriptionId: string, name: SignalName, args: SignalArgs): StripeEventRoute {
  return { kind: 'signal', subscriptionId, workflowId: subscriptionWorkflowId(subscriptionId), signal: name, args };
}

function ours(meta: Record<string, string> | null | undefined): string | undefined {
  const id = meta?.[SUBSCRIPTION_METADATA_KEY];
  return id !== undefined && SUBSCRIPTION_ID_PATTERN.test(id) ? id : undefined;
}

function parseObject<T>(schema: z.ZodType<T>, event: StripeEventEnvelope): T {
  const parsed = schema.safeParse(event.data.object);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new MalformedStripeEvent(['data', 'object', ...issue.path.map(String)].join('.'), issue.message);
}
