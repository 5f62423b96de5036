import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAuditEntry, listAuditEntries } from '../../src/audit/audit-dal';
import { APP_DATABASE_ROLE } from '../../src/config/config';
import { connectionOptions, createDb, type Db } from '../../src/db/database';
import { assertLeastPrivilege } from '../../src/db/least-privilege';
import type { LogFields } from '../../src/log';
import { spawnCli } from '../support/spawn';
import { testConfig, testEnv, testStack } from '../support/stack';

/** The SQLSTATE a statement failed with; undefined when it succeeded. Always rolled back. */
async function sqlState(client: pg.Client, statement: string): Promise<string | undefined> {
  await client.query('BEGIN');
  try {
    await client.query(statement);
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  } finally {
    // Whatever the statement did (if a privilege leaked), the run's shared audit chain keeps nothing of it.
    await client.query('ROLLBACK');
  }
}

const INSUFFICIENT_PRIVILEGE = '42501';

describe('the application database role', () => {
  // What the API, worker and codec server connect with: DATABASE_APP_URL's local default.
  const appUrl = testConfig().databaseAppUrl;
  let app: pg.Client;
  let owner: pg.Client;
  let appDb: Db;
  let ownerUser: string;

  beforeAll(async () => {
    app = new pg.Client(connectionOptions(appUrl));
    owner = new pg.Client(connectionOptions(testStack().databaseUrl));
    await Promise.all([app.connect(), owner.connect()]);
    ownerUser = (await owner.query<{ u: string }>('select current_user as u')).rows[0]!.u;
    appDb = createDb(appUrl, { max: 1 });
  });
  afterAll(async () => {
    await appDb?.destroy();
    await app?.end();
    await owner?.end();
  });

  it('logs in as itself, not as the owner switching roles', async () => {
    expect(new URL(appUrl).username).toBe(APP_DATABASE_ROLE);
    const { rows } = await app.query<{ current: string; session: string }>('select current_user as current, session_user as session');
    expect(rows[0]).toEqual({ current: APP_DATABASE_ROLE, session: APP_DATABASE_ROLE });
    expect(ownerUser).not.toBe(APP_DATABASE_ROLE);
  });

  it('appends to and reads the audit trail', async () => {
    const entry = await appendAuditEntry(appDb, { idempotencyKey: `app-role:${Date.now()}`, actor: 'svc-role-test', action: 'test.append', subjectType: 'test', subjectId: 't1' });
    expect(await listAuditEntries(appDb, { afterSeq: String(BigInt(entry.seq) - 1n), limit: 1 })).toEqual([entry]);
  });

  it('cannot UPDATE, DELETE or TRUNCATE the audit trail, nor alter, drop or re-grant it', async () => {
    for (const statement of [
      "update audit_log set actor = 'someone-else'",
      'delete from audit_log',
      'truncate audit_log',
      'alter table audit_log add column note text',
      'alter table audit_log disable trigger all',
      `alter table audit_log owner to ${APP_DATABASE_ROLE}`,
      'drop table audit_log',
      'create table audit_log_copy (seq bigint)',
    ]) {
      expect(await sqlState(app, statement), statement).toBe(INSUFFICIENT_PRIVILEGE);
    }
    // Granting itself more is a warning that grants nothing, not an error.
    await app.query(`grant update, delete, truncate on audit_log to ${APP_DATABASE_ROLE}`).catch(() => undefined);
    const privileges = await app.query<{ update: boolean; delete: boolean; truncate: boolean }>(
      `select has_table_privilege('audit_log', 'UPDATE') as update, has_table_privilege('audit_log', 'DELETE') as delete, has_table_privilege('audit_log', 'TRUNCATE') as truncate`,
    );
    expect(privileges.rows[0]).toEqual({ update: false, delete: false, truncate: false });
  });

  it('cannot become the owner, a superuser or any other role, and RESET ROLE leaves it itself', async () => {
    const superusers = (await owner.query<{ rolname: string }>('select rolname from pg_roles where rolsuper')).rows.map((r) => r.rolname);
    expect(superusers.length).toBeGreaterThan(0);
    for (const role of new Set([ownerUser, ...superusers, 'pg_write_all_data', 'pg_read_server_files'])) {
      const quoted = `"${role.replace(/"/g, '""')}"`;
      expect(await sqlState(app, `set role ${quoted}`), `SET ROLE ${role}`).toBe(INSUFFICIENT_PRIVILEGE);
      expect(await sqlState(app, `set session authorization ${quoted}`), `SET SESSION AUTHORIZATION ${role}`).toBe(INSUFFICIENT_PRIVILEGE);
    }
    await app.query('reset role');
    expect((await app.query<{ u: string }>('select current_user as u')).rows[0]!.u).toBe(APP_DATABASE_ROLE);
    expect(await sqlState(app, 'delete from audit_log')).toBe(INSUFFICIENT_PRIVILEGE);
  });

  it('holds no role attribute, is a member of no role and owns nothing', async () => {
    const { rows } = await owner.query(
      `select rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,
              (select count(*)::int from pg_auth_members m where m.member = r.oid) as memberships,
              (select count(*)::int from pg_class where relowner = r.oid)
                + (select count(*)::int from pg_namespace where nspowner = r.oid)
                + (select count(*)::int from pg_proc where proowner = r.oid)
                + (select count(*)::int from pg_type where typowner = r.oid) as owned
         from pg_roles r where rolname = $1`,
      [APP_DATABASE_ROLE],
    );
    expect(rows[0]).toEqual({
      rolcanlogin: true,
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
      rolreplication: false,
      rolbypassrls: false,
      memberships: 0,
      owned: 0,
    });
  });

  it('is what the api, worker and codec server insist on: they refuse to start as the owner', async () => {
    const warnings: string[] = [];
    const log = { warn: (fields: LogFields | string, msg?: string) => void warnings.push(msg ?? String(fields)) };
    await expect(assertLeastPrivilege(appDb, log)).resolves.toBeUndefined();
    const ownerDb = createDb(testStack().databaseUrl, { max: 1 });
    try {
      await expect(assertLeastPrivilege(ownerDb, log)).rejects.toThrow(/^DATABASE_APP_URL connects as a role that has superuser.*owns tables/);
    } finally {
      await ownerDb.destroy();
    }
    expect(warnings).toEqual([]);

    const cli = spawnCli(['api'], testEnv({ DATABASE_APP_URL: testStack().databaseUrl }));
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain('ledgerlock api: DATABASE_APP_URL connects as a role that has superuser');
    expect(cli.stderr()).not.toMatch(/\n\s+at /);
  });
});
