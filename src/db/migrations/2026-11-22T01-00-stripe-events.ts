import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Every verified Stripe webhook event, once: the primary key is Stripe's event id, so a
 * redelivery finds its row and changes nothing. The row is also the transactional outbox
 * of the signal the event becomes (`pending` until the relay has delivered it to
 * Temporal). Only what routing derived is kept, never the event body: invoices carry the
 * customer's name, email and address, which stay at Stripe.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('stripe_events')
    .addColumn('event_id', 'text', (col) => col.primaryKey().check(sql`event_id ~ '^evt_[A-Za-z0-9_]{1,250}$'`))
    .addColumn('type', 'text', (col) => col.notNull())
    .addColumn('livemode', 'boolean', (col) => col.notNull())
    .addColumn('event_created', 'timestamptz', (col) => col.notNull())
    .addColumn('received_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('pending', 'delivered', 'ignored', 'undeliverable')`))
    .addColumn('subscription_id', 'text')
    .addColumn('workflow_id', 'text')
    .addColumn('signal_name', 'text')
    .addColumn('signal_args', 'jsonb')
    .addColumn('ignore_reason', 'text')
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_error', 'text')
    .addColumn('delivered_at', 'timestamptz')
    .addCheckConstraint('stripe_events_signal_complete', sql`(signal_name is null) = (workflow_id is null) and (signal_name is null) = (signal_args is null)`)
    .addCheckConstraint('stripe_events_pending_has_signal', sql`status not in ('pending', 'delivered') or signal_name is not null`)
    .addCheckConstraint('stripe_events_delivered_at', sql`(status = 'delivered') = (delivered_at is not null)`)
    .execute();
  // The relay's queue: only pending rows, oldest event first.
  await sql`create index stripe_events_pending on stripe_events (next_attempt_at, event_created) where status = 'pending'`.execute(db);
  await db.schema.createIndex('stripe_events_subscription').on('stripe_events').columns(['subscription_id', 'event_created']).execute();
  await sql`create index stripe_events_received_at on stripe_events (received_at) where status in ('delivered', 'ignored')`.execute(db);

  // Delete: the relay prunes delivered and ignored events after the retention period.
  await sql`grant select, insert, update, delete on stripe_events to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('stripe_events').execute();
}
