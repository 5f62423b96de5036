import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditActivities } from '../../activities/audit';
import { mappingFailures } from '../../activities/failures';
import { appendAuditEntry, listAuditEntries, verifyAuditChain } from '../../src/audit/audit-dal';
import { AuditInputError, AuditKeyConflictError, type AuditEntryInput } from '../../src/audit/audit-types';
import { createDb, type Db } from '../../src/db/database';
import { testStack } from '../support/stack';

const APP_ROLE = 'ledgerlock_app';

function entry(overrides: Partial<AuditEntryInput> = {}): AuditEntryInput {
  return {
    idempotencyKey: `wf-${randomUUID()}:step`,
    actor: 'workflow:wf-test',
    action: 'saga.step',
    subjectType: 'subscription',
    subjectId: 'sub_0123456789',
    details: { step: 'charge', attempt: 1 },
    ...overrides,
  };
}

async function rowsWithKey(db: Db, key: string): Promise<number> {
  const { count } = await db.selectFrom('audit_log').select((eb) => eb.fn.countAll<string>().as('count')).where('idempotency_key', '=', key).executeTakeFirstOrThrow();
  return Number(count);
}

describe('audit trail', () => {
  let owner: Db;
  let app: Db;
  beforeAll(() => {
    owner = createDb(testStack().databaseUrl, { max: 2 });
    app = createDb(testStack().databaseUrl, { role: APP_ROLE, max: 10 });
  });
  afterAll(async () => {
    await app?.destroy();
    await owner?.destroy();
  });

  it('appends an entry that reads back exactly as hashed, and the chain verifies', async () => {
    const input = entry({ purpose: 'dunning', occurredAt: '2026-11-21T10:00:00.123Z' });
    const stored = await appendAuditEntry(app, input);
    expect(stored).toMatchObject({ idempotencyKey: input.idempotencyKey, occurredAt: '2026-11-21T10:00:00.123Z', purpose: 'dunning', details: input.details });
    expect(stored.seq).toMatch(/^\d+$/);
    expect(stored.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(await listAuditEntries(app, { afterSeq: String(BigInt(stored.seq) - 1n), limit: 1 })).toEqual([stored]);
    expect(await verifyAuditChain(app)).toMatchObject({ ok: true });
  });

  it('writes one row per idempotency key and answers a retry with the first entry', async () => {
    const first = await appendAuditEntry(app, entry({ idempotencyKey: 'wf-retry:charge' }));
    // A retried attempt: the same event at another time; nothing is written.
    const retry = await appendAuditEntry(app, entry({ idempotencyKey: 'wf-retry:charge', occurredAt: '2030-01-01T00:00:00.000Z' }));
    expect(retry).toEqual(first);
    const racing = await Promise.all(Array.from({ length: 5 }, () => appendAuditEntry(app, entry({ idempotencyKey: 'wf-race:charge' }))));
    expect(new Set(racing.map((e) => e.seq)).size).toBe(1);
    expect(await rowsWithKey(owner, 'wf-retry:charge')).toBe(1);
    expect(await rowsWithKey(owner, 'wf-race:charge')).toBe(1);
  });

  it('keeps the chain whole and seqs contiguous under 30 concurrent appends', async () => {
    const batch = randomUUID();
    const appended = await Promise.all(Array.from({ length: 30 }, (_, i) => appendAuditEntry(app, entry({ idempotencyKey: `wf-${batch}:step-${i}` }))));
    const sorted = [...appended].sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
    for (let i = 1; i < sorted.length; i++) {
      expect(BigInt(sorted[i]!.seq)).toBe(BigInt(sorted[i - 1]!.seq) + 1n);
      expect(sorted[i]!.prevHash).toBe(sorted[i - 1]!.hash);
    }
    const { count } = await owner
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('idempotency_key', 'like', `wf-${batch}:%`)
      .executeTakeFirstOrThrow();
    expect(Number(count)).toBe(30);
    const verdict = await verifyAuditChain(owner, { batchSize: 7 });
    expect(verdict).toEqual({ ok: true, entries: Number(sorted.at(-1)!.seq) });
  });

  it('lets the application role read and append, but not update, delete or truncate', async () => {
    const { rows } = await sql<{ user: string }>`select current_user as "user"`.execute(app);
    expect(rows[0]!.user).toBe(APP_ROLE);
    const stored = await appendAuditEntry(app, entry());
    expect(await app.selectFrom('audit_log').select('seq').where('seq', '=', stored.seq).execute()).toHaveLength(1);

    const denied = { code: '42501', message: expect.stringMatching(/permission denied/) };
    await expect(sql`update audit_log set actor = 'someone-else' where seq = ${stored.seq}`.execute(app)).rejects.toMatchObject(denied);
    await expect(sql`delete from audit_log where seq = ${stored.seq}`.execute(app)).rejects.toMatchObject(denied);
    await expect(sql`truncate audit_log`.execute(app)).rejects.toMatchObject(denied);
    expect(await verifyAuditChain(owner)).toMatchObject({ ok: true });

    // The role still does its other job: API idempotency keys.
    const key = { caller: 'svc-audit-test', idempotency_key: randomUUID(), request_hash: 'h', workflow_id: 'wf-1' };
    await app.insertInto('api_idempotency_keys').values(key).execute();
    await app.updateTable('api_idempotency_keys').set({ workflow_id: 'wf-2' }).where('idempotency_key', '=', key.idempotency_key).execute();
    const deleted = await app.deleteFrom('api_idempotency_keys').where('idempotency_key', '=', key.idempotency_key).executeTakeFirst();
    expect(deleted.numDeletedRows).toBe(1n);
  });

  it('fails queries, rather than running them as the session user, when the role cannot be set', async () => {
    const broken = createDb(testStack().databaseUrl, { role: 'ledgerlock_no_such_role', max: 1 });
    try {
      await expect(sql`select 1`.execute(broken)).rejects.toThrow(/ledgerlock_no_such_role/);
      // The failed connection went back to the pool discarded: a second query does not hang.
      await expect(sql`select 1`.execute(broken)).rejects.toThrow(/ledgerlock_no_such_role/);
    } finally {
      await broken.destroy();
    }
  });

  it('refuses a key that already records other content, naming no content, and writes nothing', async () => {
    const key = `wf-${randomUUID()}:refund`;
    const first = await appendAuditEntry(app, entry({ idempotencyKey: key, details: { invoiceId: 'in_first', amount: 500 } }));
    for (const other of [
      { details: { invoiceId: 'in_other', amount: 500 } },
      { actor: 'svc-someone-else' },
      { subjectId: 'sub_other' },
      { purpose: 'another reason' },
    ]) {
      const refused = appendAuditEntry(app, entry({ idempotencyKey: key, details: first.details, ...other }));
      await expect(refused).rejects.toBeInstanceOf(AuditKeyConflictError);
      await expect(refused).rejects.toThrow(`entry #${first.seq}`);
      await expect(refused).rejects.not.toThrow(/in_other|someone|sub_other|another/);
    }
    expect(await rowsWithKey(owner, key)).toBe(1);
    expect(await appendAuditEntry(app, entry({ idempotencyKey: key, details: { amount: 500, invoiceId: 'in_first' } }))).toEqual(first);

    const failure = await mappingFailures(createAuditActivities({ db: app }))
      .recordAudit(entry({ idempotencyKey: key, details: { invoiceId: 'in_other' } }))
      .catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'AuditKeyConflict', nonRetryable: true });
  });

  it('refuses personal data before writing anything', async () => {
    const input = entry({ details: { contact: 'jane.doe@example.com' } });
    const refused = appendAuditEntry(app, input);
    await expect(refused).rejects.toBeInstanceOf(AuditInputError);
    await expect(refused).rejects.toThrow(/details\.contact looks like an email address/);
    await expect(refused).rejects.not.toThrow(/jane/);
    expect(await rowsWithKey(owner, input.idempotencyKey)).toBe(0);
  });

  it('records through the activity, and fails it without retries on a refused entry', async () => {
    const { recordAudit } = mappingFailures(createAuditActivities({ db: app }));
    const input = entry();
    const recorded = await recordAudit(input);
    expect(recorded).toEqual({ seq: expect.stringMatching(/^\d+$/), hash: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(await recordAudit(input)).toEqual(recorded);

    const failure = await recordAudit(entry({ subjectId: 'jane.doe@example.com' })).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'AuditRejected', nonRetryable: true });
    expect((failure as Error).message).not.toContain('jane');
  });
});
