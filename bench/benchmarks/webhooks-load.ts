import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { signStripePayload } from '../../src/webhooks/signature';

/**
 * The load generator of the `webhooks` benchmark, run in a child process of its own (forked
 * by webhooks.ts) so that the client never shares the server's event loop. It takes one
 * phase at a time over IPC, drives it with autocannon and answers with its figures.
 *
 * Every request carries a fresh `invoice.paid` event (unique event id, about 2.5 KB, shaped
 * like Stripe's) signed with the phase's secret, whatever the target: the bare endpoint gets
 * the very same kind of bodies and headers, built at the same cost.
 */

export interface LoadPhase {
  readonly url: string;
  readonly connections: number;
  readonly durationSeconds: number;
  readonly secret: string;
  /** Every event id of the phase starts with `evt_<idPrefix>`, so its rows can be counted. */
  readonly idPrefix: string;
}

export interface LoadFigures {
  /** Responses received, by status code. */
  readonly statusCodes: Record<string, number>;
  readonly ok2xx: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
  /** Requests sent whose response had not come back when the phase ended (its connections are then closed). */
  readonly unanswered: number;
  readonly seconds: number;
  /** Latency of each 2xx response, in ms (request written → response complete). */
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanBodyBytes: number;
  /** CPU the load generator used during the phase, in seconds. */
  readonly cpuSeconds: number;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomString(length: number, alphabet: string = ALNUM): string {
  const bytes = randomBytes(length);
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[bytes[i]! % alphabet.length];
  return out;
}

/** A few hundred subscriptions renewing, as a busy account would see them. */
const SUBSCRIPTIONS = Array.from({ length: 500 }, () => ({
  ledgerlock: `sub_ll_${randomString(24, LOWER_ALNUM)}`,
  stripe: `sub_${randomString(24)}`,
  item: `si_${randomString(14)}`,
  customer: `cus_${randomString(14)}`,
}));
const ACCOUNT = `acct_${randomString(16)}`;
const PRICE = `price_${randomString(24)}`;
const PRODUCT = `prod_${randomString(14)}`;

/** An `invoice.paid` event as Stripe sends it for a renewal (API version 2025-03-31.basil and later). */
export function invoicePaidEvent(eventId: string, nowSeconds: number): string {
  const sub = SUBSCRIPTIONS[Math.floor(Math.random() * SUBSCRIPTIONS.length)]!;
  const invoiceId = `in_${randomString(24)}`;
  const amount = 1900;
  const periodEnd = nowSeconds - 60;
  const periodStart = periodEnd - 30 * 86_400;
  const secret = randomString(40);
  return JSON.stringify({
    id: eventId,
    object: 'event',
    api_version: '2025-03-31.basil',
    created: nowSeconds,
    data: {
      object: {
        id: invoiceId,
        object: 'invoice',
        account_country: 'DE',
        account_name: 'Ledgerlock Bench GmbH',
        amount_due: amount,
        amount_paid: amount,
        amount_remaining: 0,
        attempt_count: 1,
        attempted: true,
        auto_advance: false,
        automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
        billing_reason: 'subscription_cycle',
        collection_method: 'charge_automatically',
        created: periodEnd,
        currency: 'eur',
        customer: sub.customer,
        customer_address: { city: 'Berlin', country: 'DE', line1: 'Musterstraße 1', line2: null, postal_code: '10115', state: null },
        customer_email: 'jane.doe@example.com',
        customer_name: 'Jane Doe',
        customer_phone: null,
        customer_tax_exempt: 'none',
        default_payment_method: null,
        default_tax_rates: [],
        description: null,
        discounts: [],
        effective_at: periodEnd,
        ending_balance: 0,
        hosted_invoice_url: `https://invoice.stripe.com/i/${ACCOUNT}/test_${secret}?s=ap`,
        invoice_pdf: `https://pay.stripe.com/invoice/${ACCOUNT}/test_${secret}/pdf?s=ap`,
        issuer: { type: 'self' },
        lines: {
          object: 'list',
          data: [
            {
              id: `il_${randomString(24)}`,
              object: 'line_item',
              amount,
              currency: 'eur',
              description: '1 × Ledgerlock Pro (at €19.00 / month)',
              discountable: true,
              discounts: [],
              invoice: invoiceId,
              livemode: false,
              metadata: {},
              parent: {
                invoice_item_details: null,
                subscription_item_details: {
                  invoice_item: null,
                  proration: false,
                  proration_details: { credited_items: null },
                  subscription: sub.stripe,
                  subscription_item: sub.item,
                },
                type: 'subscription_item_details',
              },
              period: { end: periodEnd + 30 * 86_400, start: periodEnd },
              pricing: { price_details: { price: PRICE, product: PRODUCT }, type: 'price_details', unit_amount_decimal: String(amount) },
              quantity: 1,
              taxes: [],
            },
          ],
          has_more: false,
          total_count: 1,
          url: `/v1/invoices/${invoiceId}/lines`,
        },
        livemode: false,
        metadata: {},
        next_payment_attempt: null,
        number: `${randomString(8).toUpperCase()}-0002`,
        parent: {
          quote_details: null,
          subscription_details: { metadata: { ledgerlock_subscription_id: sub.ledgerlock }, subscription: sub.stripe },
          type: 'subscription_details',
        },
        period_end: periodEnd,
        period_start: periodStart,
        starting_balance: 0,
        status: 'paid',
        status_transitions: { finalized_at: periodEnd, marked_uncollectible_at: null, paid_at: nowSeconds, voided_at: null },
        subtotal: amount,
        subtotal_excluding_tax: amount,
        total: amount,
        total_discount_amounts: [],
        total_excluding_tax: amount,
        total_taxes: [],
        webhooks_delivered_at: nowSeconds,
      },
    },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: 'invoice.paid',
  });
}

/** Nearest-rank percentile of sorted values. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export async function runLoadPhase(phase: LoadPhase): Promise<LoadFigures> {
  const url = new URL(phase.url);
  let counter = 0;
  let bodyBytes = 0;
  const latencies: number[] = [];
  const statusCodes: Record<string, number> = {};
  const cpuBefore = process.cpuUsage();
  const request: autocannon.Request = {
    method: 'POST',
    path: url.pathname,
    setupRequest: (req) => {
      const now = Math.floor(Date.now() / 1000);
      const body = invoicePaidEvent(`evt_${phase.idPrefix}${(counter++).toString(36).padStart(10, '0')}`, now);
      bodyBytes += Buffer.byteLength(body);
      const headers = {
        ...req.headers,
        'content-type': 'application/json; charset=utf-8',
        'stripe-signature': signStripePayload(body, [phase.secret], now),
        'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      };
      return { ...req, body, headers };
    },
  };
  const options: autocannon.Options = { url: url.origin, connections: phase.connections, duration: phase.durationSeconds, requests: [request] };
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(options, (err, done) => (err ? reject(err) : resolve(done)));
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statusCodes[statusCode] = (statusCodes[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
  const cpu = process.cpuUsage(cpuBefore);
  const sorted = Float64Array.from(latencies).sort();
  const received = Object.values(statusCodes).reduce((a, b) => a + b, 0);
  return {
    statusCodes,
    ok2xx: sorted.length,
    non2xx: received - sorted.length,
    errors: result.errors,
    timeouts: result.timeouts,
    unanswered: Math.max(0, counter - received - result.errors),
    seconds: result.duration,
    p50Ms: percentile(sorted, 0.5),
    p90Ms: percentile(sorted, 0.9),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
    meanBodyBytes: counter ? bodyBytes / counter : 0,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

if (require.main === module && process.send) {
  process.on('message', (phase: LoadPhase) => {
    runLoadPhase(phase).then(
      (figures) => process.send!({ ok: true, figures }),
      (err: unknown) => process.send!({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}
