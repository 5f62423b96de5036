import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Stripe from 'stripe';
import { SUBSCRIPTION_METADATA_KEY } from '../../activities/subscriptions';
import type { Config } from '../config/config';
import type { Db } from '../db/database';
import { findSubscription } from '../subscriptions/subscription-dal';
import { signStripePayload } from './signature';
import { STRIPE_WEBHOOK_PATH } from './webhook-routes';
import { webhookSecrets } from './webhook-secrets';

/**
 * `ledgerlock stripe trigger`: what the Stripe CLI's `trigger` does for real Stripe, for
 * the local stack. It builds a Stripe event of a given type about one of our
 * subscriptions, from the objects stripe-mock serves (Stripe's own fixtures, so the shape
 * is what Stripe sends) with our ids laid over them, signs it with the local webhook
 * secret and posts it to the local API, so a developer can drive a subscription through
 * renewals, failures and cancellation on `npm start`.
 */

export const TRIGGER_EVENT_TYPES = ['invoice.paid', 'invoice.payment_failed', 'customer.subscription.updated', 'customer.subscription.deleted'] as const;
export type TriggerEventType = (typeof TRIGGER_EVENT_TYPES)[number];

export function isTriggerEventType(value: string): value is TriggerEventType {
  return (TRIGGER_EVENT_TYPES as readonly string[]).includes(value);
}

export interface TriggerRequest {
  readonly type: TriggerEventType;
  readonly subscriptionId: string;
  /** Invoice events: the invoice (e.g. the failed one, to pay it); a new renewal invoice when absent. */
  readonly invoiceId?: string;
  /** `customer.subscription.updated`: the new default payment method (default `pm_card_visa`). */
  readonly paymentMethodId?: string;
  /** `invoice.payment_failed`: when Stripe would try again (unix seconds; default three days on). */
  readonly nextPaymentAttempt?: number;
  /** Where the API listens; default: the running stack's, else API_HOST:API_PORT. */
  readonly apiUrl?: string;
}

export interface TriggerResult {
  readonly eventId: string;
  readonly type: TriggerEventType;
  readonly invoiceId?: string;
  readonly status: number;
  readonly response: string;
}

export class TriggerError extends Error {
  override name = 'TriggerError';
}

/** The subscription as Stripe knows it: what a built event refers to. */
export interface StripeSide {
  readonly subscriptionId: string;
  readonly stripeSubscriptionId: string;
  readonly stripeCustomerId: string | null;
  readonly priceId: string;
}

export async function triggerStripeEvent(config: Config, db: Db, stripe: Stripe, request: TriggerRequest): Promise<TriggerResult> {
  if (config.mode !== 'local') throw new TriggerError('stripe trigger signs events with the local webhook secret: local mode only');
  if (!config.stripe.mock && !config.stripe.apiUrl) {
    throw new TriggerError('stripe trigger builds events from stripe-mock; against real Stripe use the Stripe CLI (`stripe trigger`)');
  }
  const side = await stripeSideOf(db, request.subscriptionId);
  const now = Math.floor(Date.now() / 1000);
  const invoiceId = request.invoiceId ?? newId('in');
  const event =
    request.type === 'invoice.paid' || request.type === 'invoice.payment_failed'
      ? invoiceEvent(request.type, await stripe.invoices.retrieve(invoiceId), side, now, request.nextPaymentAttempt)
      : subscriptionEvent(request.type, await stripe.subscriptions.retrieve(side.stripeSubscriptionId), side, now, request.paymentMethodId ?? 'pm_card_visa');

  const body = JSON.stringify(event, null, 2);
  const url = new URL(STRIPE_WEBHOOK_PATH, request.apiUrl ?? apiUrlOf(config));
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signStripePayload(body, [webhookSecrets(config)[0]!], now), 'user-agent': 'ledgerlock-stripe-trigger' },
      body,
    });
  } catch (err) {
    throw new TriggerError(`could not reach the API at ${url.origin} (is \`npm start\` running?): ${(err as Error).message}`);
  }
  return {
    eventId: event.id,
    type: request.type,
    ...(event.type.startsWith('invoice.') ? { invoiceId } : {}),
    status: response.status,
    response: await response.text(),
  };
}

async function stripeSideOf(db: Db, subscriptionId: string): Promise<StripeSide> {
  const row = await findSubscription(db, subscriptionId);
  if (!row) throw new TriggerError(`no subscription ${subscriptionId} in this database`);
  if (!row.stripe_subscription_id) throw new TriggerError(`subscription ${subscriptionId} has no Stripe subscription yet (status ${row.status})`);
  const customer = await db.selectFrom('customers').select('stripe_customer_id').where('id', '=', row.customer_id).executeTakeFirst();
  return { subscriptionId, stripeSubscriptionId: row.stripe_subscription_id, stripeCustomerId: customer?.stripe_customer_id ?? null, priceId: row.price_id };
}

/** An event envelope as Stripe sends it (API version of the installed SDK). */
export interface BuiltEvent {
  readonly id: string;
  readonly object: 'event';
  readonly type: string;
  readonly [field: string]: unknown;
}

function envelope(type: string, object: object, now: number, previousAttributes?: object): BuiltEvent {
  return {
    id: newId('evt'),
    object: 'event',
    // The version the installed SDK speaks, so the event is what Stripe would send this integration.
    api_version: Stripe.API_VERSION,
    created: now,
    data: { object, ...(previousAttributes ? { previous_attributes: previousAttributes } : {}) },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  };
}

/** A renewal invoice of the subscription, paid or failed, from Stripe's invoice fixture. */
export function invoiceEvent(type: 'invoice.paid' | 'invoice.payment_failed', fixture: Stripe.Invoice, side: StripeSide, now: number, nextPaymentAttempt?: number): BuiltEvent {
  const paid = type === 'invoice.paid';
  const amount = fixture.amount_due > 0 ? fixture.amount_due : 2000;
  const invoice = {
    ...fixture,
    customer: side.stripeCustomerId ?? fixture.customer,
    // Personal data stays out of generated events, as it stays out of everything Ledgerlock keeps.
    customer_email: null,
    customer_name: null,
    customer_address: null,
    customer_phone: null,
    billing_reason: 'subscription_cycle',
    collection_method: 'charge_automatically',
    amount_due: amount,
    amount_paid: paid ? amount : 0,
    amount_remaining: paid ? 0 : amount,
    attempted: true,
    attempt_count: 1,
    status: paid ? 'paid' : 'open',
    created: now,
    next_payment_attempt: paid ? null : (nextPaymentAttempt ?? now + 3 * 86_400),
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { metadata: { [SUBSCRIPTION_METADATA_KEY]: side.subscriptionId }, subscription: side.stripeSubscriptionId },
    },
    status_transitions: { ...fixture.status_transitions, finalized_at: now, paid_at: paid ? now : null },
  };
  return envelope(type, invoice, now);
}

/** The subscription itself: its default payment method changed, or it ended. */
export function subscriptionEvent(
  type: 'customer.subscription.updated' | 'customer.subscription.deleted',
  fixture: Stripe.Subscription,
  side: StripeSide,
  now: number,
  paymentMethodId: string,
): BuiltEvent {
  const base = {
    ...fixture,
    id: side.stripeSubscriptionId,
    customer: side.stripeCustomerId ?? fixture.customer,
    metadata: { ...fixture.metadata, [SUBSCRIPTION_METADATA_KEY]: side.subscriptionId },
  };
  if (type === 'customer.subscription.deleted') {
    return envelope(type, { ...base, status: 'canceled', canceled_at: now, ended_at: now }, now);
  }
  const previous = typeof fixture.default_payment_method === 'string' ? fixture.default_payment_method : (fixture.default_payment_method?.id ?? null);
  return envelope(type, { ...base, default_payment_method: paymentMethodId }, now, { default_payment_method: previous === paymentMethodId ? null : previous });
}

function newId(prefix: string): string {
  return `${prefix}_${randomBytes(18).toString('base64url').replace(/[^A-Za-z0-9]/g, '').slice(0, 24)}`;
}

function apiUrlOf(config: Config): string {
  try {
    const run = JSON.parse(readFileSync(path.join(config.dataDir, 'run.json'), 'utf8')) as { endpoints?: { name: string; where: string }[] };
    const api = run.endpoints?.find((e) => e.name === 'API')?.where;
    if (api) return api;
  } catch {
    // No running stack: fall back to the configured address.
  }
  return `${config.apiTls ? 'https' : 'http'}://${config.api.host}:${config.api.port}`;
}
