import type { KMSClient } from '@aws-sdk/client-kms';
import type { Db } from '../db/database';
import { verifyAuditChain } from './audit-dal';
import type { CheckpointSink } from './audit-checkpoint-sink';
import { checkpointMacValid, parseCheckpoint, type AuditCheckpoint } from './audit-checkpoints';
import type { AuditTampering } from './audit-types';
import { auditVerifyFailures } from '../metrics/metrics';

/**
 * `ledgerlock audit verify`: the hash chain, then every signed checkpoint against it.
 * PCI DSS v4.0 10.3.2 to 10.3.4: audit logs protected from modification, and changes to
 * them detected.
 */

export interface AuditProblem {
  readonly tampering: AuditTampering;
  /** Where: `entry #N` or `checkpoint <file>`. */
  readonly at: string;
  /** What is wrong there, naming the tampering: seqs, times and file names, never entry content. */
  readonly reason: string;
}

export interface AuditTrailVerdict {
  readonly ok: boolean;
  /** Entries in the chain (as far as it verified). */
  readonly entries: number;
  /** Checkpoints whose MAC KMS confirmed. */
  readonly checkpoints: number;
  readonly newestCheckpoint?: { readonly seq: string; readonly createdAt: string };
  /** Entries after the newest checkpoint: only the hash chain vouches for them. */
  readonly unpinned: number;
  readonly problems: readonly AuditProblem[];
}

export interface VerifyDeps {
  /** Reading is enough: the application role will do. */
  readonly db: Db;
  readonly kms: KMSClient;
  readonly sink: CheckpointSink;
  /** The checkpoint key's alias: a checkpoint signed by any other key is forged. */
  readonly keyId: string;
  readonly database: string;
}

/**
 * Checks the chain and every checkpoint, and names each tampering found: an edited, deleted
 * or relinked entry (the chain), a tail cut below a checkpoint (truncated), entries that
 * differ from what a checkpoint vouches for (rewritten and rehashed), a checkpoint KMS did
 * not sign (forged).
 *
 * @throws when PostgreSQL, KMS or the sink cannot be read: no verdict without them.
 */
export async function verifyAuditTrail(deps: VerifyDeps): Promise<AuditTrailVerdict> {
  const problems: AuditProblem[] = [];
  const chain = await verifyAuditChain(deps.db);
  if (!chain.ok) problems.push({ tampering: chain.tampering, at: `entry #${chain.brokenAt}`, reason: `${chain.reason} (${DESCRIBE[chain.tampering]})` });

  const checkpoints: AuditCheckpoint[] = [];
  for (const name of (await deps.sink.list()).sort()) {
    const checkpoint = parseCheckpoint(name, (await deps.sink.get(name)) ?? '');
    if (!checkpoint || checkpoint.database !== deps.database || !(await checkpointMacValid(deps.kms, deps.keyId, checkpoint))) {
      problems.push({ tampering: 'forged-checkpoint', at: `checkpoint ${name}`, reason: `the audit checkpoint key did not sign it for this database (${DESCRIBE['forged-checkpoint']})` });
      continue;
    }
    checkpoints.push(checkpoint);
  }

  const head = await deps.db.selectFrom('audit_log').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst();
  const headSeq = head ? BigInt(head.seq) : 0n;
  const stored = await hashesAt(deps.db, checkpoints.filter((c) => BigInt(c.seq) <= headSeq).map((c) => c.seq));
  let truncatedBy: AuditCheckpoint | undefined;
  let rewrittenAt: AuditCheckpoint | undefined;
  for (const checkpoint of checkpoints) {
    if (BigInt(checkpoint.seq) > headSeq) {
      // The newest such checkpoint says the most about what was cut.
      truncatedBy = checkpoint;
      continue;
    }
    const hash = stored.get(checkpoint.seq);
    if (hash === undefined) {
      problems.push({ tampering: 'deleted', at: `entry #${checkpoint.seq}`, reason: `it is missing, though the checkpoint signed at ${checkpoint.createdAt} vouches for it (${DESCRIBE.deleted})` });
    } else if (hash !== checkpoint.hash && !rewrittenAt) {
      rewrittenAt = checkpoint;
    }
  }
  if (rewrittenAt) {
    problems.push({
      tampering: 'rewritten',
      at: `entry #${rewrittenAt.seq}`,
      reason: `it is not the entry the checkpoint signed at ${rewrittenAt.createdAt} vouches for (${DESCRIBE.rewritten})`,
    });
  }
  if (truncatedBy) {
    problems.push({
      tampering: 'truncated',
      at: headSeq === 0n ? 'the start of the chain (it is empty)' : `the end of the chain (entry #${headSeq})`,
      reason: `the checkpoint signed at ${truncatedBy.createdAt} vouches for entry #${truncatedBy.seq} (${DESCRIBE.truncated})`,
    });
  }

  const newest = checkpoints.at(-1);
  const unpinned = newest ? await countAfter(deps.db, newest.seq) : chain.ok ? chain.entries : 0;
  for (const problem of problems) auditVerifyFailures.inc({ kind: problem.tampering });
  return {
    ok: problems.length === 0,
    entries: chain.ok ? chain.entries : 0,
    checkpoints: checkpoints.length,
    ...(newest ? { newestCheckpoint: { seq: newest.seq, createdAt: newest.createdAt } } : {}),
    unpinned,
    problems,
  };
}

const DESCRIBE: Record<AuditTampering, string> = {
  edited: 'an edited entry',
  deleted: 'a deleted entry',
  relinked: 'a forged link',
  truncated: 'a truncated tail: the newest entries were deleted',
  rewritten: 'the chain was rewritten and rehashed',
  'forged-checkpoint': 'a forged or foreign checkpoint',
};

async function hashesAt(db: Db, seqs: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < seqs.length; i += 1000) {
    const rows = await db.selectFrom('audit_log').select(['seq', 'hash']).where('seq', 'in', seqs.slice(i, i + 1000)).execute();
    for (const row of rows) out.set(row.seq, row.hash);
  }
  return out;
}

async function countAfter(db: Db, seq: string): Promise<number> {
  const { count } = await db
    .selectFrom('audit_log')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('seq', '>', seq)
    .executeTakeFirstOrThrow();
  return Number(count);
}
