import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Dunning: the notices campaigns send (an outbox; the recipient only as ciphertext under
 * the customer's data key), the suspensions of a subscription's entitlements (one row per
 * campaign that suspended them: entitlements return when the last one is lifted), and
 * `unpaid`, a final state a campaign may leave a subscription in.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('notification_outbox')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('customer_id', 'text', (col) => col.notNull())
    .addColumn('subscription_id', 'text', (col) => col.notNull())
    .addColumn('invoice_id', 'text', (col) => col.notNull())
    .addColumn('template', 'text', (col) => col.notNull())
    // Ledgerlock v1 ciphertext bound to this row; NULL when the customer has been erased.
    .addColumn('recipient', 'bytea')
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('pending', 'sent', 'skipped')`))
    .addColumn('attempts', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('sent_at', 'timestamptz')
    .execute();
  await sql`create index notification_outbox_pending on notification_outbox (created_at) where status = 'pending'`.execute(db);

  await db.schema
    .createTable('entitlement_suspensions')
    .addColumn('subscription_id', 'text', (col) => col.notNull().references('subscriptions.id'))
    .addColumn('invoice_id', 'text', (col) => col.notNull())
    .addColumn('suspended_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('entitlement_suspensions_pk', ['subscription_id', 'invoice_id'])
    .execute();

  await sql`alter table subscriptions drop constraint subscriptions_status_check`.execute(db);
  await sql`alter table subscriptions add constraint subscriptions_status_check check (status in ('pending', 'active', 'past_due', 'unpaid', 'canceled', 'failed'))`.execute(db);

  await sql`grant select, insert, update on notification_outbox to ledgerlock_app`.execute(db);
  await sql`grant select, insert, delete on entitlement_suspensions to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`update subscriptions set status = 'past_due' where status = 'unpaid'`.execute(db);
  await sql`alter table subscriptions drop constraint subscriptions_status_check`.execute(db);
  await sql`alter table subscriptions add constraint subscriptions_status_check check (status in ('pending', 'active', 'past_due', 'canceled', 'failed'))`.execute(db);
  await db.schema.dropTable('entitlement_suspensions').execute();
  await db.schema.dropTable('notification_outbox').execute();
}
