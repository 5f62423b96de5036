import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../../src/config/config';
import { createDb, type Db } from '../../src/db/database';
import { createLogger } from '../../src/log';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { signStripePayload } from '../../src/webhooks/signature';
import { pruneStripeEvents } from '../../src/webhooks/webhook-dal';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { quietTemporalRuntime, startSignalRecorders, type SignalRecorders } from '../support/signal-recorder';
import { startTestApi } from '../support/runtime';
import { testConfig } from '../support/stack';
import { eventId, invoiceEvent, newSubscriptionId, signedHeaders, subscriptionEvent, TEST_WEBHOOK_SECRET } from '../support/stripe-events';

/**
 * The webhook path on the real API, PostgreSQL and Temporal: signature check, the
 * stripe_events record, and the relay's signals, counted by recorder workflows standing at
 * the subscriptions' workflow ids.
 */
describe('Stripe webhooks', () => {
  const logLines: string[] = [];
  let config: Config;
  let api: RunningServer & { services: Services };
  let recorders: SignalRecorders;
  let db: Db;
  const started: string[] = [];

  beforeAll(async () => {
    quietTemporalRuntime();
    config = testConfig({ STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET, STRIPE_WEBHOOK_RETRY_MAX_SECONDS: '1' });
    api = await startTestApi(config, createLogger('info', {}, (line) => logLines.push(line)));
    recorders = await startSignalRecorders(config, api.services);
    db = createDb(config.databaseUrl!, { max: 4 });
  });
  afterAll(async () => {
    await recorders?.stop(started);
    await api?.stop();
    await db?.destroy();
  });

  const post = (body: string, headers: Record<string, string> = signedHeaders(body)) =>
    fetch(`${api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers, body });
  const recorderFor = async () => {
    const id = newSubscriptionId();
    await recorders.start(id);
    started.push(id);
    return id;
  };
  const rowOf = (id: string) => db.selectFrom('stripe_events').selectAll().where('event_id', '=', id).executeTakeFirst();
  const rowCount = async () => Number((await db.selectFrom('stripe_events').select(sql<string>`count(*)`.as('n')).executeTakeFirstOrThrow()).n);
  const delivered = (ids: readonly string[]) =>
    vi.waitFor(
      async () => {
        const pending = await db.selectFrom('stripe_events').select('event_id').where('event_id', 'in', ids).where('status', '!=', 'delivered').execute();
        expect(pending).toEqual([]);
      },
      { timeout: 60_000, interval: 200 },
    );

  it('acknowledges a verified event once it is recorded, and the relay signals its workflow once', async () => {
    const sub = await recorderFor();
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    const response = await post(JSON.stringify(event));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ received: true });
    await delivered([event.id as string]);
    const row = await rowOf(event.id as string);
    expect(row).toMatchObject({ type: 'invoice.paid', status: 'delivered', workflow_id: `subscription:${sub}`, signal_name: 'renewalPaid', attempts: 1 });
    expect(row!.event_created.getTime()).toBe((event.created as number) * 1000);
    // Only what routing derived is kept: not the customer's name or email from the invoice.
    expect(JSON.stringify(row)).not.toMatch(/jenny|rosen|example\.com/i);
    expect((await recorders.received(sub)).counts).toEqual({ [event.id as string]: 1 });
  });

  it('answers a redelivery 200 and changes nothing', async () => {
    const sub = await recorderFor();
    const event = invoiceEvent({ type: 'invoice.payment_failed', subscriptionId: sub });
    const body = JSON.stringify(event);
    expect((await post(body)).status).toBe(200);
    await delivered([event.id as string]);
    const before = await rowOf(event.id as string);

    // Stripe redelivers the same body, signed again at a later time.
    const again = await post(body, signedHeaders(body, TEST_WEBHOOK_SECRET, Math.floor(Date.now() / 1000) + 5));
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ received: true, duplicate: true });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await rowOf(event.id as string)).toEqual(before);
    expect((await recorders.received(sub)).counts).toEqual({ [event.id as string]: 1 });
  });

  it('records an event it does not handle, answers 200 and signals nothing', async () => {
    const sub = await recorderFor();
    const event = invoiceEvent({ type: 'invoice.finalized', subscriptionId: sub });
    const response = await post(JSON.stringify(event));
    expect(response.status).toBe(200);
    expect(await rowOf(event.id as string)).toMatchObject({ status: 'ignored', ignore_reason: 'unhandled event type', signal_name: null, signal_args: null });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await recorders.received(sub)).counts).toEqual({});
  });

  describe('refuses bad input: 4xx, nothing recorded, nothing signalled, a log line with the reason and no payload', () => {
    const marker = `in_marker${randomBytes(6).toString('hex')}`;
    const now = () => Math.floor(Date.now() / 1000);
    const cases: { name: string; status: number; reason: string; send: (body: string) => { body: string; headers: Record<string, string> } }[] = [
      {
        name: 'a forged signature (signed over another body)',
        status: 400,
        reason: 'no matching signature',
        send: (body) => ({ body, headers: signedHeaders(body.replace('"amount_paid":2500', '"amount_paid":1')) }),
      },
      { name: 'a stale timestamp', status: 400, reason: 'timestamp outside tolerance', send: (body) => ({ body, headers: signedHeaders(body, TEST_WEBHOOK_SECRET, now() - 301) }) },
      { name: 'a missing header', status: 400, reason: 'missing signature header', send: (body) => ({ body, headers: { 'content-type': 'application/json' } }) },
      { name: 'a wrong secret', status: 400, reason: 'no matching signature', send: (body) => ({ body, headers: signedHeaders(body, 'whsec_wrongwrongwrongwrong') }) },
      { name: 'malformed JSON, correctly signed', status: 400, reason: 'malformed JSON', send: (body) => ({ body: body.slice(0, -1), headers: signedHeaders(body.slice(0, -1)) }) },
      {
        name: 'JSON that is not a Stripe event, correctly signed',
        status: 400,
        reason: 'not a Stripe event (body.id)',
        send: (body) => {
          const notAnEvent = JSON.stringify({ ...JSON.parse(body), id: 'cus_123' });
          return { body: notAnEvent, headers: signedHeaders(notAnEvent) };
        },
      },
      {
        name: 'a handled event whose object is malformed, correctly signed',
        status: 400,
        reason: 'malformed invoice.paid (body.data.object.amount_paid)',
        send: (body) => {
          const malformed = body.replace('"amount_paid":2500', '"amount_paid":"2500"');
          return { body: malformed, headers: signedHeaders(malformed) };
        },
      },
      {
        name: 'a body over 1 MiB, correctly signed',
        status: 413,
        reason: 'body too large',
        send: (body) => {
          const padded = JSON.stringify({ ...JSON.parse(body), padding: 'x'.repeat(1024 * 1024) });
          return { body: padded, headers: signedHeaders(padded) };
        },
      },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        const sub = await recorderFor();
        const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub, invoiceId: marker });
        const rowsBefore = await rowCount();
        const linesBefore = logLines.length;
        const { body, headers } = c.send(JSON.stringify(event));

        const response = await post(body, headers);
        expect(response.status).toBe(c.status);
        expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        const problem = (await response.json()) as { status: number };
        expect(problem.status).toBe(c.status);

        expect(await rowOf(event.id as string)).toBeUndefined();
        expect(await rowCount()).toBe(rowsBefore);
        const lines = logLines.slice(linesBefore);
        expect(lines.some((line) => line.includes('stripe webhook rejected') && line.includes(c.reason))).toBe(true);
        for (const line of lines) expect(line).not.toMatch(new RegExp(`${marker}|jenny|rosen|${event.id as string}`, 'i'));
        await new Promise((resolve) => setTimeout(resolve, 300));
        expect((await recorders.received(sub)).counts).toEqual({});
      });
    }
  });

  it('applies 1,000 events with 30% duplicates, in shuffled order, exactly once each', async () => {
    const subs = await Promise.all(Array.from({ length: 20 }, () => recorderFor()));
    const unique = Array.from({ length: 700 }, (_, i) => {
      const sub = subs[i % subs.length]!;
      const kind = i % 3;
      const event =
        kind === 0
          ? invoiceEvent({ type: 'invoice.paid', subscriptionId: sub })
          : kind === 1
            ? invoiceEvent({ type: 'invoice.payment_failed', subscriptionId: sub })
            : subscriptionEvent({ type: 'customer.subscription.updated', subscriptionId: sub, paymentMethodId: `pm_${i}`, previousPaymentMethodId: 'pm_before' });
      return { sub, id: event.id as string, body: JSON.stringify(event) };
    });
    const duplicates = Array.from({ length: 300 }, () => unique[Math.floor(Math.random() * unique.length)]!);
    const deliveries = shuffle([...unique, ...duplicates]);

    const answers: { status: number; duplicate: boolean }[] = [];
    const queue = [...deliveries];
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) {
          const response = await post(next.body);
          const json = (await response.json()) as { duplicate?: boolean };
          answers.push({ status: response.status, duplicate: json.duplicate === true });
        }
      }),
    );
    expect(answers.filter((a) => a.status !== 200)).toEqual([]);
    expect(answers.filter((a) => a.duplicate)).toHaveLength(300);

    await delivered(unique.map((u) => u.id));
    const expected = new Map<string, Record<string, number>>(subs.map((s) => [s, {}]));
    for (const u of unique) expected.get(u.sub)![u.id] = 1;
    for (const sub of subs) expect((await recorders.received(sub)).counts).toEqual(expected.get(sub));
  });

  it('keeps an event whose workflow is not there yet pending, and delivers it once the workflow appears', async () => {
    const sub = newSubscriptionId();
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    expect((await post(JSON.stringify(event))).status).toBe(200);
    await vi.waitFor(async () => expect(await rowOf(event.id as string)).toMatchObject({ status: 'pending', last_error: 'workflow not found yet' }), { timeout: 20_000 });
    expect((await rowOf(event.id as string))!.attempts).toBeGreaterThanOrEqual(1);

    await recorders.start(sub);
    started.push(sub);
    await delivered([event.id as string]);
    expect((await recorders.received(sub)).counts).toEqual({ [event.id as string]: 1 });
  });

  it('marks an event for a subscription whose workflow has ended undeliverable, and keeps it', async () => {
    const sub = newSubscriptionId();
    await db
      .insertInto('subscriptions')
      .values({ id: sub, customer_id: 'cus_ll_ended', price_id: 'price_basic', status: 'failed', saga_step: 'create-stripe-subscription', failure_type: 'FirstPaymentFailed', failure_reason: 'card_declined', stripe_subscription_id: null })
      .execute();
    const event = subscriptionEvent({ type: 'customer.subscription.deleted', subscriptionId: sub });
    expect((await post(JSON.stringify(event))).status).toBe(200);
    await vi.waitFor(async () => expect(await rowOf(event.id as string)).toMatchObject({ status: 'undeliverable', last_error: 'subscription failed: its workflow has ended' }), {
      timeout: 20_000,
    });
  });

  it('accepts events signed with either secret while the endpoint secret rotates', async () => {
    const next = `whsec_next${randomBytes(12).toString('hex')}`;
    const rotating = await startTestApi(testConfig({ STRIPE_WEBHOOK_SECRET: `${TEST_WEBHOOK_SECRET},${next}` }));
    try {
      for (const secret of [TEST_WEBHOOK_SECRET, next]) {
        const body = JSON.stringify(invoiceEvent({ type: 'invoice.finalized', subscriptionId: null }));
        const response = await fetch(`${rotating.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body, secret), body });
        expect(response.status).toBe(200);
      }
      const body = JSON.stringify(invoiceEvent({ type: 'invoice.finalized', subscriptionId: null }));
      const stale = await fetch(`${rotating.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body, 'whsec_retiredretiredretired'), body });
      expect(stale.status).toBe(400);
    } finally {
      await rotating.stop();
    }
  });

  it('prunes delivered and ignored events after the retention period, never pending ones', async () => {
    const old = new Date(Date.now() - 31 * 86_400_000);
    const ids = { delivered: eventId(), ignored: eventId(), pending: eventId() };
    const base = { type: 'invoice.paid', livemode: false, event_created: old, received_at: old } as const;
    await db
      .insertInto('stripe_events')
      .values([
        { ...base, event_id: ids.delivered, status: 'delivered', delivered_at: old, workflow_id: 'subscription:x', signal_name: 'renewalPaid', signal_args: '{}', subscription_id: null, ignore_reason: null, last_error: null },
        { ...base, event_id: ids.ignored, status: 'ignored', delivered_at: null, workflow_id: null, signal_name: null, signal_args: null, subscription_id: null, ignore_reason: 'unhandled event type', last_error: null },
        // Far in the future, so the running relay leaves it alone.
        { ...base, event_id: ids.pending, status: 'pending', delivered_at: null, workflow_id: 'subscription:x', signal_name: 'renewalPaid', signal_args: '{}', subscription_id: null, ignore_reason: null, last_error: null, next_attempt_at: new Date(Date.now() + 86_400_000) },
      ] as never)
      .execute();
    expect(await pruneStripeEvents(db, new Date(Date.now() - 30 * 86_400_000))).toBeGreaterThanOrEqual(2);
    expect(await rowOf(ids.delivered)).toBeUndefined();
    expect(await rowOf(ids.ignored)).toBeUndefined();
    expect(await rowOf(ids.pending)).toMatchObject({ status: 'pending' });
    await db.deleteFrom('stripe_events').where('event_id', '=', ids.pending).execute();
  });

  it('checks the signature over the raw bytes as Stripe sent them, not re-serialised JSON', async () => {
    const sub = await recorderFor();
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    // Stripe pretty-prints its bodies; a parser that re-serialised before checking would refuse this.
    const body = JSON.stringify(event, null, 2);
    const response = await post(body, { 'content-type': 'application/json', 'stripe-signature': signStripePayload(body, [TEST_WEBHOOK_SECRET]) });
    expect(response.status).toBe(200);
    await delivered([event.id as string]);
  });
});

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}
