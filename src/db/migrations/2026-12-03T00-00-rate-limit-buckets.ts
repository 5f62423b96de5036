import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Token buckets of the API's rate limits, shared by every API process. A key is a route
 * class and a hash (of a token identity or of a source address), never the identity or the
 * address itself. Rows idle for an hour are deleted by the API.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('rate_limit_buckets')
    .addColumn('key', 'text', (col) => col.primaryKey())
    .addColumn('tokens', 'double precision', (col) => col.notNull())
    .addColumn('refilled_at', 'timestamptz', (col) => col.notNull())
    .addColumn('allowed', 'boolean', (col) => col.notNull())
    .execute();
  await db.schema.createIndex('rate_limit_buckets_refilled_at').on('rate_limit_buckets').column('refilled_at').execute();
  await sql`grant select, insert, update, delete on rate_limit_buckets to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('rate_limit_buckets').execute();
}
