import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

export async function up(db: Kysely<any>): Promise<void> {
  // The application role ledgerlock_app exists: the audit-log migration before this one creates it.
  // Per-customer data keys, only ever stored wrapped by the region's KMS master key.
  await db.schema
    .createTable('data_keys')
    .addColumn('id', 'uuid', (col) => col.primaryKey())
    .addColumn('customer_id', 'text', (col) => col.notNull())
    .addColumn('region', 'text', (col) => col.notNull())
    .addColumn('kms_key_id', 'text', (col) => col.notNull())
    // NULL once destroyed: crypto-shredding.
    .addColumn('wrapped_key', 'bytea')
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('active', 'destroyed')`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('destroyed_at', 'timestamptz')
    .addCheckConstraint('data_keys_destroyed_has_no_key', sql`(status = 'destroyed') = (wrapped_key is null)`)
    .execute();
  await sql`create unique index data_keys_one_active_per_customer on data_keys (customer_id) where status = 'active'`.execute(db);

  // Personal data is ciphertext only (bytea, Ledgerlock v1 format, AAD bound to the cell).
  await db.schema
    .createTable('customers')
    .addColumn('id', 'text', (col) => col.primaryKey().check(sql`id ~ '^cust_[a-z0-9]{20,40}$'`))
    .addColumn('region', 'text', (col) => col.notNull())
    .addColumn('country', 'text', (col) => col.notNull().check(sql`country ~ '^[A-Z]{2}$'`))
    .addColumn('data_key_id', 'uuid', (col) => col.notNull().references('data_keys.id'))
    .addColumn('email', 'bytea', (col) => col.notNull())
    .addColumn('name', 'bytea', (col) => col.notNull())
    .addColumn('address', 'bytea')
    .addColumn('phone', 'bytea')
    .addColumn('tax_id', 'bytea')
    .addColumn('stripe_customer_id', 'text')
    .addColumn('status', 'text', (col) => col.notNull().defaultTo('active').check(sql`status in ('active', 'erased')`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('erased_at', 'timestamptz')
    .execute();

  await sql`grant select, insert, update on data_keys, customers to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('customers').execute();
  await db.schema.dropTable('data_keys').execute();
}
