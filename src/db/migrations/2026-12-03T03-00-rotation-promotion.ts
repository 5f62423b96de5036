import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * A rotation that has promoted its new keys and only waits out its grace period no longer
 * holds the one-at-a-time slot: the next rotation (an emergency one above all) may start,
 * and ends that grace. `promoted_at` marks the moment; one rotation at most is running and
 * not yet promoted.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('key_rotations').addColumn('promoted_at', 'timestamptz').execute();
  await sql`update key_rotations set promoted_at = now() where status = 'running' and (stage = 'grace period' or stage like 'retiring%')`.execute(db);
  await sql`drop index key_rotations_one_running`.execute(db);
  await sql`create unique index key_rotations_one_unpromoted on key_rotations ((true)) where status = 'running' and promoted_at is null`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index key_rotations_one_unpromoted`.execute(db);
  await sql`create unique index key_rotations_one_running on key_rotations ((true)) where status = 'running'`.execute(db);
  await db.schema.alterTable('key_rotations').dropColumn('promoted_at').execute();
}
