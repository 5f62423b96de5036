import { sql } from 'kysely';
import type { AuditLogRow, Db } from '../db/database';
import { normaliseAuditInput } from './audit-guard';
import { auditHash, canonicalJson, GENESIS_HASH, type AuditContent } from './audit-hash';
import { AuditKeyConflictError, type AuditChainVerdict, type AuditEntry, type AuditEntryInput } from './audit-types';
import { auditAppends } from '../metrics/metrics';

/**
 * The audit trail's repository: append, list, verify. Rows are never updated or deleted
 * (the application role cannot); each row's hash covers its content and the previous
 * row's hash, so a change made by anyone who could is found by {@link verifyAuditChain}.
 */

/**
 * Serialises appends across every process: each new row must link to the last one. An
 * arbitrary constant, unique among Ledgerlock's advisory locks.
 */
const AUDIT_APPEND_LOCK = '7302741001';

/**
 * Appends an entry, or returns the one already stored under its idempotency key when it
 * records the same thing (then nothing is written: an activity retry is harmless, even
 * with another `occurredAt`).
 *
 * The entry's seq comes from the identity column under the lock. Seqs may have gaps (a
 * transaction failing after its insert, sequence values skipped after a crash): the hash
 * links, not the seqs, are what verification checks.
 *
 * @throws AuditInputError before any database work when the entry is refused.
 * @throws AuditKeyConflictError when the key already records other content: nothing is written.
 */
export async function appendAuditEntry(db: Db, input: AuditEntryInput): Promise<AuditEntry> {
  return (await appendAuditEntryReporting(db, input)).entry;
}

/** {@link appendAuditEntry}, saying whether this call appended the entry or found it recorded already. */
export async function appendAuditEntryReporting(db: Db, input: AuditEntryInput): Promise<{ entry: AuditEntry; outcome: 'appended' | 'duplicate' }> {
  const content = normaliseAuditInput(input, new Date());
  let outcome: 'appended' | 'duplicate' = 'appended';
  const entry = await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${AUDIT_APPEND_LOCK}::bigint)`.execute(trx);
    // Read after the lock: in READ COMMITTED each statement sees what committed before it.
    const existing = await trx
      .selectFrom('audit_log')
      .selectAll()
      .where('idempotency_key', '=', content.idempotency_key)
      .executeTakeFirst();
    if (existing) {
      if (!sameEvent(existing, content)) throw new AuditKeyConflictError(existing.seq);
      outcome = 'duplicate';
      return toEntry(existing);
    }
    const last = await trx.selectFrom('audit_log').select('hash').orderBy('seq', 'desc').limit(1).executeTakeFirst();
    const prevHash = last?.hash ?? GENESIS_HASH;
    const row = await trx
      .insertInto('audit_log')
      .values({ ...content, details: JSON.stringify(content.details), prev_hash: prevHash, hash: auditHash(prevHash, content) })
      .returningAll()
      .executeTakeFirstOrThrow();
    return toEntry(row);
  });
  // Once committed: a rolled-back append is no append.
  auditAppends.inc({ outcome });
  return { entry, outcome };
}

/** Entries after `afterSeq` (exclusive), oldest first. */
export async function listAuditEntries(db: Db, options: { afterSeq?: string | undefined; limit: number }): Promise<AuditEntry[]> {
  const rows = await db
    .selectFrom('audit_log')
    .selectAll()
    .where('seq', '>', options.afterSeq ?? '0')
    .orderBy('seq')
    .limit(options.limit)
    .execute();
  return rows.map(toEntry);
}

/** Every entry about any of `subjects` (a type and ids), oldest first. */
export async function auditEntriesAbout(db: Db, subjects: readonly { type: string; ids: readonly string[] }[]): Promise<AuditEntry[]> {
  const wanted = subjects.filter((s) => s.ids.length > 0);
  if (wanted.length === 0) return [];
  const rows = await db
    .selectFrom('audit_log')
    .selectAll()
    .where((eb) => eb.or(wanted.map((s) => eb.and([eb('subject_type', '=', s.type), eb('subject_id', 'in', [...s.ids])]))))
    .orderBy('seq')
    .execute();
  return rows.map(toEntry);
}

/**
 * Walks the whole chain, a batch at a time, and names the first entry that fails:
 * a `prev_hash` that does not link to the previous entry (an entry deleted before it, named
 * as missing when its seq also skips; or reordered, relinked), or content that no longer
 * matches its hash (edited). Deleting the newest entries, or rewriting and rehashing the whole
 * chain, leaves no trace here: the signed checkpoints (audit-verify.ts) find those.
 */
export async function verifyAuditChain(db: Db, options: { batchSize?: number } = {}): Promise<AuditChainVerdict> {
  const batchSize = options.batchSize ?? 1000;
  let prevSeq = 0n;
  let prevHash = GENESIS_HASH;
  let entries = 0;
  for (;;) {
    const rows = await db.selectFrom('audit_log').selectAll().where('seq', '>', prevSeq.toString()).orderBy('seq').limit(batchSize).execute();
    for (const row of rows) {
      const seq = BigInt(row.seq);
      // The hash links, not the seqs, prove nothing is missing: PostgreSQL may skip sequence
      // values (after a crash), but a deleted entry breaks the next one's link.
      if (row.prev_hash !== prevHash) {
        if (seq !== prevSeq + 1n) {
          const missing = seq - prevSeq === 2n ? `entry #${prevSeq + 1n} is` : `entries #${prevSeq + 1n} to #${seq - 1n} are`;
          return { ok: false, brokenAt: row.seq, reason: `${missing} missing`, tampering: 'deleted' };
        }
        return { ok: false, brokenAt: row.seq, reason: prevSeq === 0n ? 'the first entry does not start the chain' : `it does not link to entry #${prevSeq}`, tampering: 'relinked' };
      }
      if (auditHash(row.prev_hash, toContent(row)) !== row.hash) {
        return { ok: false, brokenAt: row.seq, reason: 'its content does not match its hash', tampering: 'edited' };
      }
      prevSeq = seq;
      prevHash = row.hash;
      entries += 1;
    }
    if (rows.length < batchSize) return { ok: true, entries };
  }
}

/** Everything but the time: a retry happens later, yet records the same event. */
function sameEvent(row: AuditLogRow, content: AuditContent): boolean {
  const event = (c: Omit<AuditContent, 'idempotency_key' | 'occurred_at'>) =>
    canonicalJson({ actor: c.actor, action: c.action, subject_type: c.subject_type, subject_id: c.subject_id, purpose: c.purpose, details: c.details });
  return event(row) === event(content);
}

function toContent(row: AuditLogRow): AuditContent {
  return { ...row, occurred_at: row.occurred_at.toISOString() };
}

function toEntry(row: AuditLogRow): AuditEntry {
  return {
    seq: row.seq,
    idempotencyKey: row.idempotency_key,
    occurredAt: row.occurred_at.toISOString(),
    actor: row.actor,
    action: row.action,
    subjectType: row.subject_type,
    subjectId: row.subject_id,
    purpose: row.purpose,
    details: row.details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
