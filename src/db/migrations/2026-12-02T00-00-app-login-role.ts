import { sql, type Kysely } from 'kysely';

// Frozen in time: never import application code into a migration.

/**
 * The application connects as `ledgerlock_app` itself (a LOGIN role) rather than as the
 * owner switching to it with SET ROLE, which the owner's session could undo with RESET
 * ROLE. For that to be least privilege the role must hold nothing beyond its grants: no
 * attribute (superuser, CREATEROLE, ...), no membership in any role (so no SET ROLE to
 * anything), no object of its own.
 *
 * Roles are cluster-wide and several databases (test runs) migrate at once. Changing the
 * role needs superuser or CREATEROLE: where the migrating owner has neither (production), the
 * DBA creates the role as LOGIN beforehand (README) and this only checks.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`DO $$
  DECLARE
    wanted CONSTANT text := 'ledgerlock_app';
    can_manage boolean;
  BEGIN
    SELECT rolsuper OR rolcreaterole INTO can_manage FROM pg_catalog.pg_roles WHERE rolname = current_user;
    IF can_manage AND EXISTS (
      SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted
        AND (NOT rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)
    ) THEN
      BEGIN
        ALTER ROLE ledgerlock_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
      EXCEPTION WHEN OTHERS THEN
        -- Another database's migration altered it at the same moment ("tuple concurrently
        -- updated"): fine when the role ends up as wanted, an error otherwise.
        IF EXISTS (
          SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted
            AND (NOT rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)
        ) THEN
          RAISE;
        END IF;
      END;
    END IF;
    IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = wanted AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN
      RAISE EXCEPTION 'role % must have no attribute beyond LOGIN (superuser, createrole, createdb, replication, bypassrls)', wanted;
    END IF;
    IF EXISTS (
      SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid = m.member WHERE r.rolname = wanted
    ) THEN
      RAISE EXCEPTION 'role % must not be a member of any role: it could SET ROLE to it', wanted;
    END IF;
  END
  $$`.execute(db);

  // PostgreSQL 15 already withholds CREATE on public from PUBLIC; older clusters grant it,
  // and a table the application created would be one it owns (and could rewrite).
  await sql`REVOKE CREATE ON SCHEMA public FROM PUBLIC`.execute(db);
}

/** Nothing to undo per database: the role is the cluster's, and other databases may use it. */
export async function down(): Promise<void> {}
