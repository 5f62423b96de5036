import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Subscriptions as the creation saga and the subscription's workflow leave them, so the
 * API can answer after a workflow ended, and the entitlements they grant. Opaque ids
 * only: no personal data lives in either table. No foreign key to customers: the saga
 * records the subscription before it stores the customer, and a shredded customer's row
 * stays anyway.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('subscriptions')
    .addColumn('id', 'text', (col) => col.primaryKey().check(sql`id ~ '^sub_ll_[a-z0-9]{20,40}$'`))
    .addColumn('customer_id', 'text', (col) => col.notNull())
    .addColumn('price_id', 'text', (col) => col.notNull())
    .addColumn('stripe_subscription_id', 'text')
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('pending', 'active', 'past_due', 'canceled', 'failed')`))
    .addColumn('saga_step', 'text', (col) => col.notNull())
    .addColumn('failure_type', 'text')
    .addColumn('failure_reason', 'text')
    .addColumn('cancel_at_period_end', 'boolean', (col) => col.notNull().defaultTo(false))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addCheckConstraint('subscriptions_failed_has_type', sql`(status = 'failed') = (failure_type is not null)`)
    .execute();
  await sql`create unique index subscriptions_stripe_subscription_id on subscriptions (stripe_subscription_id) where stripe_subscription_id is not null`.execute(db);
  await db.schema.createIndex('subscriptions_customer_id').on('subscriptions').column('customer_id').execute();

  // Revoking keeps the row (revoked_at set); granting again adds a new one.
  await db.schema
    .createTable('entitlements')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('subscription_id', 'text', (col) => col.notNull().references('subscriptions.id'))
    .addColumn('customer_id', 'text', (col) => col.notNull())
    .addColumn('price_id', 'text', (col) => col.notNull())
    .addColumn('granted_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .execute();
  await sql`create unique index entitlements_one_active_per_subscription on entitlements (subscription_id) where revoked_at is null`.execute(db);
  await db.schema.createIndex('entitlements_customer_id').on('entitlements').column('customer_id').execute();

  // The application role exists: the audit-log migration creates it.
  await sql`grant select, insert, update on subscriptions, entitlements to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('entitlements').execute();
  await db.schema.dropTable('subscriptions').execute();
}
