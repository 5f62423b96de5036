import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, dropDatabase, ensureDatabase, type Db } from '../../src/db/database';
import { migrate, MIGRATION_NAMES } from '../../src/db/migrate';
import { testStack } from '../support/stack';

async function tableExists(db: Db, table: string): Promise<boolean> {
  const { rows } = await sql<{ exists: boolean }>`select to_regclass(${table}) is not null as exists`.execute(db);
  return rows[0]!.exists;
}

describe('migrations', () => {
  // A database of its own: going down must not disturb the other suites.
  const url = new URL(testStack().databaseUrl);
  url.pathname = `${url.pathname}_migrations`;
  const databaseUrl = url.toString();
  let db: Db;

  beforeAll(async () => {
    expect(await ensureDatabase(databaseUrl)).toEqual({ created: true });
    expect(await ensureDatabase(databaseUrl)).toEqual({ created: false });
    db = createDb(databaseUrl, { max: 2 });
  });
  afterAll(async () => {
    await db?.destroy();
    await dropDatabase(databaseUrl);
  });

  it('go up to the latest, then all the way down, then up again', async () => {
    expect(await migrate(db, 'latest')).toEqual(MIGRATION_NAMES);
    expect(await tableExists(db, 'api_idempotency_keys')).toBe(true);
    expect(await migrate(db, 'latest')).toEqual([]);

    for (const _ of MIGRATION_NAMES) await migrate(db, 'down');
    expect(await tableExists(db, 'api_idempotency_keys')).toBe(false);

    expect(await migrate(db, 'latest')).toEqual(MIGRATION_NAMES);
    expect(await tableExists(db, 'api_idempotency_keys')).toBe(true);
  });

  it('enforce one idempotency key per caller', async () => {
    const row = { caller: 'svc-a', idempotency_key: 'k1', request_hash: 'h', workflow_id: 'wf-1' };
    await db.insertInto('api_idempotency_keys').values(row).execute();
    await expect(db.insertInto('api_idempotency_keys').values({ ...row, workflow_id: 'wf-2' }).execute()).rejects.toThrow(/unique/);
    await db.insertInto('api_idempotency_keys').values({ ...row, caller: 'svc-b' }).execute();
  });
});
