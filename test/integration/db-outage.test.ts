import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { databaseOutage } from '../../src/db/db-errors';
import { connectionOptions, createDb, type Db } from '../../src/db/database';
import type { LogFields } from '../../src/log';
import { testStack } from '../support/stack';

/**
 * What a PostgreSQL restart or failover does to a pool: every backend terminated, idle
 * connections and one checked out in the middle of a transaction alike. The process
 * lives on (an unheard 'error' event would end this test's worker), the statement in
 * hand fails as an outage, and the next query connects afresh.
 */
describe('the pool when its backends are terminated', () => {
  let db: Db;
  let admin: pg.Client;
  const warnings: string[] = [];

  beforeAll(async () => {
    db = createDb(testStack().databaseUrl, { max: 4, log: { warn: (fields: LogFields | string, msg?: string) => void warnings.push(msg ?? String(fields)) } });
    admin = new pg.Client(connectionOptions(testStack().databaseUrl));
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await db?.destroy();
  });

  it('survives a backend terminated between two statements of a transaction, and idle ones, then serves again', async () => {
    // Warm the pool so there are idle connections to lose too.
    await Promise.all(Array.from({ length: 3 }, () => sql`select pg_sleep(0.05)`.execute(db)));
    const failure = await db
      .transaction()
      .execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        expect(rows[0]!.pid).toBeGreaterThan(0);
        // The connection is checked out and idle here: its 'error' event fires now, with no query to fail.
        await new Promise((resolve) => setTimeout(resolve, 300));
        await sql`select 1`.execute(trx);
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(databaseOutage(failure)).toBeDefined();
    expect(warnings).toContain('PostgreSQL connection lost');
    const { rows } = await sql<{ ok: number }>`select 1 as ok`.execute(db);
    expect(rows).toEqual([{ ok: 1 }]);
  });
});
