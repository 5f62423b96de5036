import { sql, type Transaction } from 'kysely';
import type { Database, Db, StripeEventRow } from '../db/database';
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
 * Claims up to `limit` pending events that are due, oldest event first, locked until
 * `tx` ends: another relay skips them (`SKIP LOCKED`) rather than waiting or delivering
 * them twice.
 */
export async function claimDueEvents(tx: Transaction<Database>, limit: number): Promise<PendingStripeEvent[]> {
  const rows = await tx
    .selectFrom('stripe_events')
    .select(['event_id', 'workflow_id', 'subscription_id', 'signal_name', 'signal_args', 'attempts', 'received_at'])
    .where('status', '=', 'pending')
    .where('next_attempt_at', '<=', sql<Date>`now()`)
    .orderBy('event_created')
    .orderBy('event_id')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
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

export async function markDelivered(tx: Transaction<Database>, eventIds: readonly string[]): Promise<void> {
  if (eventIds.length === 0) return;
  await tx
    .updateTable('stripe_events')
    .set({ status: 'delivered', delivered_at: sql<Date>`now()`, last_error: null, attempts: sql<number>`attempts + 1` })
    .where('event_id', 'in', eventIds)
    .execute();
}

/** A failed attempt: due again after `retryInMs`, with the reason (never the payload). */
export async function markRetry(tx: Transaction<Database>, eventId: string, reason: string, retryInMs: number): Promise<void> {
  await tx
    .updateTable('stripe_events')
    .set({
      attempts: sql<number>`attempts + 1`,
      last_error: reason,
      next_attempt_at: sql<Date>`now() + make_interval(secs => ${retryInMs / 1000})`,
    })
    .where('event_id', '=', eventId)
    .execute();
}

/** No workflow will ever take this event (its subscription ended): kept, with why, for operators. */
export async function markUndeliverable(tx: Transaction<Database>, eventId: string, reason: string): Promise<void> {
  await tx
    .updateTable('stripe_events')
    .set({ status: 'undeliverable', attempts: sql<number>`attempts + 1`, last_error: reason })
    .where('event_id', '=', eventId)
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
