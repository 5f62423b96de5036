import type { Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/** A subject-access export reads every audit entry about one customer and their subscriptions. */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex('audit_log_by_subject').on('audit_log').columns(['subject_type', 'subject_id', 'seq']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('audit_log_by_subject').execute();
}
