import { sql, type RawBuilder } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAuditEntry, verifyAuditChain } from '../../src/audit/audit-dal';
import { auditHash } from '../../src/audit/audit-hash';
import { createDb, dropDatabase, ensureDatabase, type Db } from '../../src/db/database';
import { createMigrator, migrate } from '../../src/db/migrate';
import { spawnCli } from '../support/spawn';
import { testEnv, testStack } from '../support/stack';

const APP_ROLE = 'ledgerlock_app';
const BEFORE_AUDIT_LOG = '2026-11-21T00-00-api-idempotency-keys';

async function privilege(db: Db, check: RawBuilder<{ ok: boolean }>): Promise<boolean> {
  return (await check.execute(db)).rows[0]!.ok;
}

async function runVerify(databaseUrl: string): Promise<{ code: number | null; out: string }> {
  const cli = spawnCli(['audit', 'verify'], testEnv({ DATABASE_URL: databaseUrl }));
  const code = await cli.exited;
  // stdout only: stderr may carry the AWS SDK's Node.js version notice.
  return { code, out: cli.stdout() };
}

describe('audit trail tampering', () => {
  // A database of its own: these tests edit rows as the owner and migrate down.
  const url = new URL(testStack().databaseUrl);
  url.pathname = `${url.pathname}_audit`;
  const databaseUrl = url.toString();
  let owner: Db;

  beforeAll(async () => {
    await ensureDatabase(databaseUrl);
    owner = createDb(databaseUrl, { max: 2 });
    // The role already exists (the run's main database created it): the migration must not mind.
    await migrate(owner);
  });
  afterAll(async () => {
    await owner?.destroy();
    await dropDatabase(databaseUrl);
  });

  it('migrates down, revoking what it granted but keeping the role, and up again', async () => {
    const canInsertKeys = sql<{ ok: boolean }>`select has_table_privilege(${APP_ROLE}, 'api_idempotency_keys', 'INSERT') as ok`;
    const canUseSchema = sql<{ ok: boolean }>`select has_schema_privilege(${APP_ROLE}, 'public', 'USAGE') as ok`;
    const auditLogExists = sql<{ ok: boolean }>`select to_regclass('audit_log') is not null as ok`;
    expect(await privilege(owner, canInsertKeys)).toBe(true);

    const down = await createMigrator(owner).migrateTo(BEFORE_AUDIT_LOG);
    expect(down.error).toBeUndefined();
    expect(await privilege(owner, auditLogExists)).toBe(false);
    expect(await privilege(owner, canInsertKeys)).toBe(false);
    expect(await privilege(owner, sql<{ ok: boolean }>`select exists (select from pg_roles where rolname = ${APP_ROLE}) as ok`)).toBe(true);

    await migrate(owner);
    expect(await privilege(owner, auditLogExists)).toBe(true);
    expect(await privilege(owner, canInsertKeys)).toBe(true);
    expect(await privilege(owner, canUseSchema)).toBe(true);
    expect(await privilege(owner, sql<{ ok: boolean }>`select has_table_privilege(${APP_ROLE}, 'audit_log', 'UPDATE') as ok`)).toBe(false);
  });

  it('accepts sequence values PostgreSQL skipped (as after a crash) when every link holds', async () => {
    const scratch = new URL(databaseUrl);
    scratch.pathname = `${scratch.pathname}_gap`;
    await ensureDatabase(scratch.toString());
    const db = createDb(scratch.toString(), { max: 1 });
    try {
      await migrate(db);
      const entry = (n: number) => ({ idempotencyKey: `gap-${n}`, actor: 'svc-test', action: 'test.gap', subjectType: 'test', subjectId: `t${n}` });
      await appendAuditEntry(db, entry(1));
      await sql`select setval(pg_get_serial_sequence('audit_log', 'seq'), 40)`.execute(db);
      const after = await appendAuditEntry(db, entry(2));
      expect(after.seq).toBe('41');
      expect(await verifyAuditChain(db)).toEqual({ ok: true, entries: 2 });
    } finally {
      await db.destroy();
      await dropDatabase(scratch.toString());
    }
  });

  it('names the first broken entry when content is edited, a link forged or an entry deleted', async () => {
    const app = createDb(databaseUrl, { role: APP_ROLE, max: 1 });
    try {
      for (let i = 1; i <= 6; i++) {
        await appendAuditEntry(app, { idempotencyKey: `wf-t:step-${i}`, actor: 'workflow:wf-t', action: 'saga.step', subjectType: 'subscription', subjectId: 'sub_1', details: { amount: i } });
      }
    } finally {
      await app.destroy();
    }
    expect(await verifyAuditChain(owner)).toEqual({ ok: true, entries: 6 });
    // No worker ran here, so nothing signed the head: verify says what it cannot see.
    expect(await runVerify(databaseUrl)).toEqual({ code: 0, out: 'audit trail intact: 6 entries; no signed checkpoint yet, so a cut tail or a rehashed chain would not show\n' });

    // Edited content: that entry.
    await sql`update audit_log set details = '{"amount": 300}' where seq = 3`.execute(owner);
    for (const batchSize of [1000, 2]) {
      expect(await verifyAuditChain(owner, { batchSize })).toEqual({ ok: false, brokenAt: '3', reason: 'its content does not match its hash', tampering: 'edited' });
    }
    const edited = await runVerify(databaseUrl);
    expect(edited.code).toBe(1);
    expect(edited.out).toContain('audit trail broken at entry #3: its content does not match its hash');
    await sql`update audit_log set details = '{"amount": 3}' where seq = 3`.execute(owner);
    expect(await verifyAuditChain(owner)).toEqual({ ok: true, entries: 6 });

    // A forged link, with a hash recomputed to match: that entry, since the link is wrong.
    const row = await owner.selectFrom('audit_log').selectAll().where('seq', '=', '4').executeTakeFirstOrThrow();
    const forgedPrev = 'f'.repeat(64);
    const forgedHash = auditHash(forgedPrev, { ...row, occurred_at: row.occurred_at.toISOString() });
    await sql`update audit_log set prev_hash = ${forgedPrev}, hash = ${forgedHash} where seq = 4`.execute(owner);
    expect(await verifyAuditChain(owner)).toEqual({ ok: false, brokenAt: '4', reason: 'it does not link to entry #3', tampering: 'relinked' });
    await sql`update audit_log set prev_hash = ${row.prev_hash}, hash = ${row.hash} where seq = 4`.execute(owner);
    expect(await verifyAuditChain(owner)).toMatchObject({ ok: true });

    // A deleted entry: the one after the gap.
    await sql`delete from audit_log where seq = 4`.execute(owner);
    expect(await verifyAuditChain(owner, { batchSize: 3 })).toEqual({ ok: false, brokenAt: '5', reason: 'entry #4 is missing', tampering: 'deleted' });
    const deleted = await runVerify(databaseUrl);
    expect(deleted.code).toBe(1);
    expect(deleted.out).toContain('audit trail broken at entry #5: entry #4 is missing');
  });
});
