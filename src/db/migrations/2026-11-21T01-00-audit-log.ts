import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * The append-only audit trail, and the role the API and worker run as (SET ROLE after
 * connecting): it may read and append to audit_log but never rewrite it. The hash chain
 * makes tampering by anyone who can bypass the role (the owner, a superuser) evident.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('audit_log')
    .addColumn('seq', 'bigint', (col) => col.generatedAlwaysAsIdentity().primaryKey())
    .addColumn('idempotency_key', 'text', (col) => col.notNull().unique())
    .addColumn('occurred_at', 'timestamptz', (col) => col.notNull())
    .addColumn('actor', 'text', (col) => col.notNull())
    .addColumn('action', 'text', (col) => col.notNull())
    .addColumn('subject_type', 'text', (col) => col.notNull())
    .addColumn('subject_id', 'text', (col) => col.notNull())
    .addColumn('purpose', 'text')
    .addColumn('details', 'jsonb', (col) => col.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('prev_hash', 'text', (col) => col.notNull().check(sql`prev_hash ~ '^[0-9a-f]{64}$'`))
    .addColumn('hash', 'text', (col) => col.notNull().check(sql`hash ~ '^[0-9a-f]{64}$'`))
    .execute();

  // Roles are cluster-wide and several databases (test runs) migrate at once: check first
  // (CREATE ROLE needs CREATEROLE even when the role exists), then tolerate losing the race,
  // which surfaces as duplicate_object or, mid-commit of the other creator, unique_violation.
  await sql`DO $$
  BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledgerlock_app') THEN
      BEGIN
        CREATE ROLE ledgerlock_app NOLOGIN;
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
      END;
    END IF;
  END
  $$`.execute(db);

  await sql`GRANT USAGE ON SCHEMA public TO ledgerlock_app`.execute(db);
  // INSERT alone suffices for the identity column: its sequence needs no grant.
  await sql`GRANT SELECT, INSERT ON audit_log TO ledgerlock_app`.execute(db);
  // Explicit, so a later broad GRANT cannot be mistaken for intent and reviewers see the rule.
  await sql`REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM ledgerlock_app`.execute(db);
  await sql`GRANT SELECT, INSERT, UPDATE, DELETE ON api_idempotency_keys TO ledgerlock_app`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('audit_log').execute();
  // The role stays: other databases of the cluster may still use it.
  await sql`REVOKE SELECT, INSERT, UPDATE, DELETE ON api_idempotency_keys FROM ledgerlock_app`.execute(db);
  await sql`REVOKE USAGE ON SCHEMA public FROM ledgerlock_app`.execute(db);
}
