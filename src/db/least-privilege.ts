import { sql } from 'kysely';
import { errorMessage, type Logger } from '../log';
import type { Db } from './database';

/** The application's database role can do more than it should; the message says what and where to look. */
export class LeastPrivilegeError extends Error {
  override name = 'LeastPrivilegeError';
}

/**
 * Refuses to run the api, worker or codec server as a role that could rewrite the audit
 * trail: a superuser or a role with other attributes, a member of any role (it could SET
 * ROLE to it), or the owner of a table (the owner may do anything to it). A deployment
 * that hands DATABASE_APP_URL the owner's credentials stops here, at start.
 *
 * An unreachable database is no reason to refuse: the process starts, its health check says
 * PostgreSQL is down, and the check is logged as skipped.
 *
 * @throws LeastPrivilegeError naming what the role holds.
 */
export function assertLeastPrivilege(db: Db, log: Pick<Logger, 'warn'>): Promise<void> {
  // The api, worker and codec server of one process share one pool: asked once.
  let checked = checks.get(db);
  if (!checked) {
    checked = checkRole(db, log);
    checks.set(db, checked);
  }
  return checked;
}

const checks = new WeakMap<Db, Promise<void>>();

async function checkRole(db: Db, log: Pick<Logger, 'warn'>): Promise<void> {
  let held: { attributes: string[]; member: boolean; owns: boolean };
  try {
    const { rows } = await sql<{ attributes: string[]; member: boolean; owns: boolean }>`
      select array_remove(array[
               case when r.rolsuper then 'superuser' end,
               case when r.rolcreaterole then 'createrole' end,
               case when r.rolcreatedb then 'createdb' end,
               case when r.rolreplication then 'replication' end,
               case when r.rolbypassrls then 'bypassrls' end], null) as attributes,
             exists (select from pg_catalog.pg_auth_members m where m.member = r.oid) as member,
             exists (select from pg_catalog.pg_class c where c.relowner = r.oid and c.relnamespace = 'public'::regnamespace) as owns
        from pg_catalog.pg_roles r where r.rolname = current_user`.execute(db);
    held = rows[0]!;
  } catch (err) {
    log.warn({ reason: errorMessage(err) }, 'database role check skipped: PostgreSQL did not answer');
    return;
  }
  const problems = [
    ...held.attributes.map((attribute) => `has ${attribute}`),
    ...(held.member ? ['is a member of another role (it could SET ROLE to it)'] : []),
    ...(held.owns ? ['owns tables (their owner may rewrite them)'] : []),
  ];
  if (problems.length > 0) {
    throw new LeastPrivilegeError(
      `DATABASE_APP_URL connects as a role that ${problems.join(', ')}: the application must connect as its own unprivileged LOGIN role (README, "Database roles")`,
    );
  }
}
