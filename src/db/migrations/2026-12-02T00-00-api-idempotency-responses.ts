import type { Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * The answer a request gave, kept beside its Idempotency-Key, so a retry gets it back
 * however much happened since (refunds: the workflow remembers only its latest ones, and
 * Stripe forgets an idempotency key after 24 hours). Opaque ids and amounts only.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_idempotency_keys').addColumn('response', 'jsonb').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('api_idempotency_keys').dropColumn('response').execute();
}
