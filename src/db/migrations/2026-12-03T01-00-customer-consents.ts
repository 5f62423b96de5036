import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Consent records: append-only, like the audit trail. A withdrawal is a new record, never an
 * edit, so what a customer had agreed to at any moment stays provable (GDPR art. 7(1)). The
 * rows hold opaque ids and codes only: no personal data, nothing to shred on erasure.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('customer_consents')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('customer_id', 'text', (col) => col.notNull().references('customers.id'))
    .addColumn('purpose', 'text', (col) => col.notNull())
    .addColumn('granted', 'boolean', (col) => col.notNull())
    .addColumn('source', 'text', (col) => col.notNull())
    .addColumn('recorded_by', 'text', (col) => col.notNull())
    .addColumn('recorded_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('seq', 'bigint', (col) => col.generatedAlwaysAsIdentity().notNull().unique())
    .execute();
  await db.schema.createIndex('customer_consents_by_customer').on('customer_consents').columns(['customer_id', 'purpose', 'seq']).execute();
  await sql`GRANT SELECT, INSERT ON customer_consents TO ledgerlock_app`.execute(db);
  await sql`REVOKE UPDATE, DELETE, TRUNCATE ON customer_consents FROM ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('customer_consents').execute();
}
