import { sql } from 'kysely';
import type { Db, StripeEventRow } from '../db/database';
import type { StripeEventEnvelope, StripeEventRoute } from './stripe-event-routing';

/**
 * Records a verified event with what it routes to, in one statement (one transaction):
 * the event id's primary key makes a redelivery a no-op. Answers `duplicate` when the id
 * was recorded before, whatever became of it since.
 */
export async function recordStripeEvent(db: Db, event: StripeEventEnvelope, route: StripeEventRoute): Promise<'recorded' | 'duplicate'> {
  const inserted = await db
    .insertInto('stripe_events')
    .values({
      event_id: event.id,
      type: event.type,
      livemode: event.livemode,
      event_created: new Date(event.created * 1000),
      status: route.kind === 'signal' ? 'pending' : 'ignored',
      subscription_id: route.subscriptionId ?? null,
      workflow_id: route.kind === 'signal' ? route.workflowId : null,
      signal_name: route.kind === 'signal' ? route.signal : null,
      signal_args: route.kind === 'signal' ? JSON.stringify(route.args) : null,
      ignore_reason: route.kind === 'ignored' ? route.reason : null,
      delivered_at: null,
      last_error: null,
    })
    .onConflict((oc) => oc.column('event_id').doNothing())
    .returning('event_id')
    .executeTakeFirst();
  return inserted ? 'recorded' : 'duplicate';
}

/** A pending event as the relay delivers it. */
export interface PendingStripeEvent {
  readonly eventId: string;
  readonly workflowId: string;
  readonly subscriptionId: string | null;
  readonly signalName: string;
  readonly signalArgs: Record<string, unknown>;
  readonly attempts: number;
  readonly receivedAt: Date;
}

/**
 * Leases up to `limit` pending events that are due, oldest event first, in one short
 * statement (its own transaction): each one's next attempt moves `leaseMs` ahead, so no
 * other relay takes it meanwhile, and no lock is held while the caller signals Temporal.
 * A relay that dies holding a lease loses it when the lease runs out, and another relay
 * delivers the event then: at least once, which the workflows' event-id check makes
 * harmless.
 */
export async function leaseDueEvents(db: Db, limit: number, leaseMs: number): Promise<PendingStripeEvent[]> {
  const due = db
    .selectFrom('stripe_events')
    .select('event_id')
    .where('status', '=', 'pending')
    .where('next_attempt_at', '<=', sql<Date>`now()`)
    .orderBy('event_created')
    .orderBy('event_id')
    .limit(limit)
    .forUpdate()
    .skipLocked();
  const rows = await db
    .updateTable('stripe_events')
    .set({ next_attempt_at: sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where('event_id', 'in', due)
    .returning(['event_id', 'event_created', 'workflow_id', 'subscription_id', 'signal_name', 'signal_args', 'attempts', 'received_at'])
    .execute();
  // RETURNING keeps no order: oldest first again, as the relay delivers them.
  rows.sort((x, y) => x.event_created.getTime() - y.event_created.getTime() || (x.event_id < y.event_id ? -1 : x.event_id > y.event_id ? 1 : 0));
  return rows.map((row) => ({
    eventId: row.event_id,
    workflowId: row.workflow_id!,
    subscriptionId: row.subscription_id,
    signalName: row.signal_name!,
    signalArgs: row.signal_args!,
    attempts: row.attempts,
    receivedAt: row.received_at,
  }));
}

/** Delivered; only a pending row changes (another relay may have settled it after a lease ran out). */
export async function markDelivered(db: Db, eventIds: readonly string[]): Promise<void> {
  if (eventIds.length === 0) return;
  await db
    .updateTable('stripe_events')
    .set({ status: 'delivered', delivered_at: sql<Date>`now()`, last_error: null, attempts: sql<number>`attempts + 1` })
    .where('event_id', 'in', eventIds)
    .where('status', '=', 'pending')
    .execute();
}

/** A failed attempt: due again after `retryInMs`, with the reason (never the payload). */
export async function markRetry(db: Db, eventId: string, reason: string, retryInMs: number): Promise<void> {
  await db
    .updateTable('stripe_events')
    .set({
      attempts: sql<number>`attempts + 1`,
      last_error: reason,
      next_attempt_at: sql<Date>`now() + make_interval(secs => ${retryInMs / 1000})`,
    })
    .where('event_id', '=', eventId)
    .where('status', '=', 'pending')
    .execute();
}

/** Leased but not attempted (an earlier event of their workflow just failed): due again after `retryInMs`, attempts unchanged. */
export async function postponeEvents(db: Db, eventIds: readonly string[], retryInMs: number): Promise<void> {
  if (eventIds.length === 0) return;
  await db
    .updateTable('stripe_events')
    .set({ next_attempt_at: sql<Date>`now() + make_interval(secs => ${retryInMs / 1000})` })
    .where('event_id', 'in', eventIds)
    .where('status', '=', 'pending')
    .execute();
}

/** No workflow will ever take this event (its subscription ended): kept, with why, for operators. */
export async function markUndeliverable(db: Db, eventId: string, reason: string): Promise<void> {
  await db
    .updateTable('stripe_events')
    .set({ status: 'undeliverable', attempts: sql<number>`attempts + 1`, last_error: reason })
    .where('event_id', '=', eventId)
    .where('status', '=', 'pending')
    .execute();
}

/**
 * Deletes delivered and ignored events received before `olderThan`. Stripe stops
 * redelivering an event after three days, so ids older than the retention period can no
 * longer come back. Pending and undeliverable events are never pruned.
 */
export async function pruneStripeEvents(db: Db, olderThan: Date): Promise<number> {
  const result = await db
    .deleteFrom('stripe_events')
    .where('status', 'in', ['delivered', 'ignored'])
    .where('received_at', '<', olderThan)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

export async function findStripeEvent(db: Db, eventId: string): Promise<StripeEventRow | undefined> {
  return db.selectFrom('stripe_events').selectAll().where('event_id', '=', eventId).executeTakeFirst();
}
