import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * Key rotation: each master key Ledgerlock has used (`key_versions`: per alias, at most one
 * active), each rotation run (`key_rotations`: at most one running), and on every data
 * key the wrap a running rotation made under the new master key (`pending_*`, kept beside
 * the current wrap until promotion) and the wrap it replaced (`previous_*`, kept until the
 * old master key is retired, so a failed rotation can be undone).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .alterTable('data_keys')
    .addColumn('rotation_id', 'text')
    .addColumn('pending_wrapped_key', 'bytea')
    .addColumn('pending_kms_key_id', 'text')
    .addColumn('pending_rotation_id', 'text')
    .addColumn('previous_wrapped_key', 'bytea')
    .addColumn('previous_kms_key_id', 'text')
    .execute();
  await sql`create index data_keys_region_id on data_keys (region, id) where status = 'active'`.execute(db);
  await sql`create index data_keys_kms_key_id on data_keys (kms_key_id) where status = 'active'`.execute(db);

  await db.schema
    .createTable('key_rotations')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('running', 'completed', 'failed')`))
    .addColumn('stage', 'text', (col) => col.notNull())
    .addColumn('requested_by', 'text', (col) => col.notNull())
    .addColumn('total_keys', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('rewrapped_keys', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('verified_keys', 'integer', (col) => col.notNull().defaultTo(0))
    .addColumn('failure', 'text')
    .addColumn('started_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('finished_at', 'timestamptz')
    .execute();
  await sql`create unique index key_rotations_one_running on key_rotations ((true)) where status = 'running'`.execute(db);

  await db.schema
    .createTable('key_versions')
    .addColumn('id', 'uuid', (col) => col.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('alias', 'text', (col) => col.notNull())
    .addColumn('purpose', 'text', (col) => col.notNull().check(sql`purpose in ('region', 'codec')`))
    .addColumn('region', 'text')
    .addColumn('kms_key_id', 'text')
    .addColumn('rotation_id', 'text')
    .addColumn('status', 'text', (col) => col.notNull().check(sql`status in ('creating', 'pending', 'active', 'decrypt_only', 'retired', 'failed')`))
    .addColumn('created_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('promoted_at', 'timestamptz')
    .addColumn('retired_at', 'timestamptz')
    .execute();
  await sql`create unique index key_versions_one_active_per_alias on key_versions (alias) where status = 'active'`.execute(db);
  await sql`create unique index key_versions_per_rotation on key_versions (rotation_id, alias) where rotation_id is not null`.execute(db);

  await sql`grant select, insert, update on key_rotations, key_versions to ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('key_versions').execute();
  await db.schema.dropTable('key_rotations').execute();
  await sql`drop index data_keys_kms_key_id`.execute(db);
  await sql`drop index data_keys_region_id`.execute(db);
  await db.schema
    .alterTable('data_keys')
    .dropColumn('rotation_id')
    .dropColumn('pending_wrapped_key')
    .dropColumn('pending_kms_key_id')
    .dropColumn('pending_rotation_id')
    .dropColumn('previous_wrapped_key')
    .dropColumn('previous_kms_key_id')
    .execute();
}
