import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ownerDatabaseUrl, type Config } from '../../src/config/config';
import { createDb, dropDatabase, ensureDatabase, type Db } from '../../src/db/database';
import { migrate } from '../../src/db/migrate';
import { createLogger } from '../../src/log';
import { createServices, type Services } from '../../src/services';
import { relayBatch } from '../../src/webhooks/relay';
import { routeStripeEvent, type StripeEventEnvelope } from '../../src/webhooks/stripe-event-routing';
import { recordStripeEvent } from '../../src/webhooks/webhook-dal';
import { quietTemporalRuntime, startSignalRecorders, type SignalRecorders } from '../support/signal-recorder';
import { testConfig, testStack } from '../support/stack';
import { invoiceEvent, newSubscriptionId } from '../support/stripe-events';

/**
 * The relay holds no transaction (and no row lock) while it signals Temporal: it leases
 * rows in a statement of its own, signals, then marks them. A database of its own, so no
 * API process's relay takes these rows; the real Temporal server, its signals held at a
 * gate so the test can look at PostgreSQL mid-signal.
 */
describe('webhook relay leases', () => {
  let config: Config;
  let services: Services;
  let recorders: SignalRecorders;
  let db: Db;
  const subs: string[] = [];

  beforeAll(async () => {
    quietTemporalRuntime();
    const url = new URL(testStack().databaseUrl);
    url.pathname = `${url.pathname}_lease`;
    config = testConfig({ DATABASE_URL: url.toString() });
    await ensureDatabase(ownerDatabaseUrl(config));
    db = createDb(ownerDatabaseUrl(config), { max: 2 });
    await migrate(db);
    services = createServices(config, createLogger('error'));
    recorders = await startSignalRecorders(config, services);
  });
  afterAll(async () => {
    await recorders?.stop(subs);
    await services?.close();
    await db?.destroy();
    if (config) await dropDatabase(ownerDatabaseUrl(config));
  });

  /** The real client, each signal waiting at `gate` first. */
  const gatedClient = (client: Client, gate: Promise<void>, entered: () => void): Pick<Client, 'workflow' | 'connection'> => ({
    connection: client.connection,
    workflow: {
      getHandle: (id: string) => ({
        signal: async (...args: unknown[]) => {
          entered();
          await gate;
          return (client.workflow.getHandle(id).signal as (...a: unknown[]) => Promise<void>)(...args);
        },
      }),
    } as unknown as Client['workflow'],
  });

  const openTransactions = async () =>
    (
      await db
        .selectFrom('pg_stat_activity' as never)
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('datname' as never, '=', new URL(ownerDatabaseUrl(config)).pathname.slice(1) as never)
        .where('state' as never, 'like', 'idle in transaction%' as never)
        .executeTakeFirstOrThrow()
    ).n;

  it('signals with no transaction open and the rows leased, then marks them delivered', async () => {
    const sub = newSubscriptionId();
    subs.push(sub);
    await recorders.start(sub);
    const events = [invoiceEvent({ type: 'invoice.paid', subscriptionId: sub }), invoiceEvent({ type: 'invoice.paid', subscriptionId: sub })];
    for (const event of events) await recordStripeEvent(db, event as unknown as StripeEventEnvelope, routeStripeEvent(event as unknown as StripeEventEnvelope));

    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    let signalling!: () => void;
    const inSignal = new Promise<void>((resolve) => (signalling = resolve));
    const relay = { db: services.db, temporal: gatedClient(recorders.client, gate, () => signalling()), log: createLogger('error'), leaseMs: 30_000 };
    const pass = relayBatch(relay, 10);
    await inSignal;

    // Mid-signal: nothing holds a transaction, the rows are still pending but leased, and a second relay finds nothing to take.
    expect(Number(await openTransactions())).toBe(0);
    const rows = await db.selectFrom('stripe_events').select(['status', 'next_attempt_at']).execute();
    expect(rows.map((r) => r.status)).toEqual(['pending', 'pending']);
    for (const row of rows) expect(row.next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 20_000);
    expect(await relayBatch({ ...relay, temporal: recorders.client }, 10)).toBe(0);

    open();
    expect(await pass).toBe(2);
    const settled = await db.selectFrom('stripe_events').select(['event_id', 'status', 'attempts']).execute();
    expect(settled.every((r) => r.status === 'delivered' && r.attempts === 1)).toBe(true);
    expect((await recorders.received(sub)).counts).toEqual(Object.fromEntries(events.map((e) => [e.id as string, 1])));
  });

  it('gives an event whose lease ran out (its relay died mid-signal) to the next relay, delivered once to the workflow', async () => {
    const sub = newSubscriptionId();
    subs.push(sub);
    await recorders.start(sub);
    const event = invoiceEvent({ type: 'invoice.paid', subscriptionId: sub });
    await recordStripeEvent(db, event as unknown as StripeEventEnvelope, routeStripeEvent(event as unknown as StripeEventEnvelope));
    // A relay that leased it and died before it could signal or mark.
    let signalling!: () => void;
    const inSignal = new Promise<void>((resolve) => (signalling = resolve));
    void relayBatch({ db: services.db, temporal: gatedClient(recorders.client, new Promise(() => undefined), () => signalling()), log: createLogger('error'), leaseMs: 1_000 }, 10);
    await inSignal;
    expect(await relayBatch({ db: services.db, temporal: recorders.client, log: createLogger('error') }, 10)).toBe(0);

    await new Promise((resolve) => setTimeout(resolve, 1_200));
    expect(await relayBatch({ db: services.db, temporal: recorders.client, log: createLogger('error') }, 10)).toBe(1);
    expect(await db.selectFrom('stripe_events').select('status').where('event_id', '=', event.id as string).executeTakeFirstOrThrow()).toEqual({ status: 'delivered' });
    expect((await recorders.received(sub)).counts).toEqual({ [event.id as string]: 1 });
  });
});
