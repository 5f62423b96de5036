import type { KMSClient } from '@aws-sdk/client-kms';
import { sql } from 'kysely';
import path from 'node:path';
import { auditCheckpointKeyAlias, type Config } from '../config/config';
import type { Db } from '../db/database';
import { generateMac, verifyMac } from '../kms/kms-client';
import { errorMessage, type Logger } from '../log';
import { DirectoryCheckpointSink, type CheckpointSink } from './audit-checkpoint-sink';
import { auditVerifyFailures } from '../metrics/metrics';

/**
 * Signed checkpoints of the audit chain's head. The hash chain alone proves nothing to
 * someone who can rewrite the whole table (the database owner): they can cut the tail or
 * recompute every hash. A checkpoint (database, seq, hash, time) MACed by a KMS key the
 * database owner cannot use, stored where they cannot write, pins the chain up to its seq:
 * `audit verify` then finds a tail cut below it or a chain rehashed through it.
 *
 * What a checkpoint cannot pin: entries appended after the newest one. That window is at
 * most AUDIT_CHECKPOINT_INTERVAL_SECONDS or AUDIT_CHECKPOINT_EVERY_ENTRIES entries.
 */

export const CHECKPOINT_FORMAT = 'ledgerlock.audit-checkpoint.v1';

export interface AuditCheckpoint {
  readonly format: typeof CHECKPOINT_FORMAT;
  /** The database whose chain this is, so a checkpoint of another database never vouches here. */
  readonly database: string;
  /** The head entry's seq (a bigint as a decimal string) and hash. */
  readonly seq: string;
  readonly hash: string;
  /** ISO 8601, when the checkpoint was signed. */
  readonly createdAt: string;
  /** The KMS key that signed it (its ARN): information only, verification uses the alias. */
  readonly keyArn: string;
  /** Base64 HMAC-SHA-256, by KMS, of {@link checkpointMessage}. */
  readonly mac: string;
}

/** The bytes a checkpoint's MAC covers: every field but the MAC and the key. */
export function checkpointMessage(checkpoint: Pick<AuditCheckpoint, 'database' | 'seq' | 'hash' | 'createdAt'>): Buffer {
  return Buffer.from(JSON.stringify([CHECKPOINT_FORMAT, checkpoint.database, checkpoint.seq, checkpoint.hash, checkpoint.createdAt]), 'utf8');
}

/** One checkpoint per seq: the chain only grows, so a seq has one true hash. */
export function checkpointName(seq: string): string {
  return `${seq.padStart(20, '0')}.json`;
}

/** The database a URL names: checkpoints are kept per database. */
export function databaseName(databaseUrl: string): string {
  return decodeURIComponent(new URL(databaseUrl).pathname.replace(/^\//, ''));
}

/** The sink of `config`'s database: a folder of its name under AUDIT_CHECKPOINT_DIR. */
export function checkpointSinkFor(config: Pick<Config, 'auditCheckpoints' | 'databaseAppUrl'>): CheckpointSink {
  return new DirectoryCheckpointSink(path.join(config.auditCheckpoints.dir, databaseName(config.databaseAppUrl)));
}

/**
 * Reads a stored checkpoint; undefined when it is not one (malformed, another format, or a
 * name that does not match its seq). Says nothing about its MAC: see {@link checkpointMacValid}.
 */
export function parseCheckpoint(name: string, body: string): AuditCheckpoint | undefined {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  const c = value as Record<string, unknown>;
  const strings = ['database', 'seq', 'hash', 'createdAt', 'keyArn', 'mac'].every((field) => typeof c[field] === 'string');
  if (c.format !== CHECKPOINT_FORMAT || !strings) return undefined;
  const checkpoint = c as unknown as AuditCheckpoint;
  if (!/^[1-9][0-9]{0,19}$/.test(checkpoint.seq) || !/^[0-9a-f]{64}$/.test(checkpoint.hash)) return undefined;
  if (checkpointName(checkpoint.seq) !== name || Number.isNaN(Date.parse(checkpoint.createdAt))) return undefined;
  return checkpoint;
}

export async function checkpointMacValid(kms: KMSClient, keyId: string, checkpoint: AuditCheckpoint): Promise<boolean> {
  return verifyMac(kms, keyId, checkpointMessage(checkpoint), Buffer.from(checkpoint.mac, 'base64'));
}

export interface CheckpointDeps {
  readonly db: Db;
  readonly kms: KMSClient;
  readonly sink: CheckpointSink;
  /** The HMAC key's alias (auditCheckpointKeyAlias). */
  readonly keyId: string;
  readonly database: string;
}

interface Head {
  readonly seq: string;
  readonly hash: string;
}

async function chainHead(db: Db): Promise<Head | undefined> {
  return db.selectFrom('audit_log').select(['seq', 'hash']).orderBy('seq', 'desc').limit(1).executeTakeFirst();
}

/**
 * Signs the chain's current head and stores it, once per seq. When the sink already holds
 * that seq with another hash, the chain was rewritten under it: `conflict` (the stored
 * checkpoint stays; only `audit verify` judges).
 */
export async function writeCheckpoint(deps: CheckpointDeps, head: Head, now: Date): Promise<{ outcome: 'written' | 'exists' | 'conflict'; checkpoint: AuditCheckpoint }> {
  const unsigned = { database: deps.database, seq: head.seq, hash: head.hash, createdAt: now.toISOString() };
  const { mac, keyArn } = await generateMac(deps.kms, deps.keyId, checkpointMessage(unsigned));
  const checkpoint: AuditCheckpoint = { format: CHECKPOINT_FORMAT, ...unsigned, keyArn, mac: mac.toString('base64') };
  const name = checkpointName(head.seq);
  const outcome = await deps.sink.putOnce(name, `${JSON.stringify(checkpoint, null, 2)}\n`);
  if (outcome === 'written') return { outcome, checkpoint };
  const stored = parseCheckpoint(name, (await deps.sink.get(name)) ?? '');
  return stored?.hash === head.hash ? { outcome: 'exists', checkpoint: stored } : { outcome: 'conflict', checkpoint };
}

/** The newest checkpoint in the sink that parses, without checking its MAC (the writer only needs to know where it stands). */
async function newestStored(sink: CheckpointSink): Promise<AuditCheckpoint | undefined> {
  const names = (await sink.list()).sort().reverse();
  for (const name of names) {
    const checkpoint = parseCheckpoint(name, (await sink.get(name)) ?? '');
    if (checkpoint) return checkpoint;
  }
  return undefined;
}

export interface CheckpointerOptions extends CheckpointDeps {
  /** A checkpoint is due this long after the previous one, once the head has moved. */
  readonly intervalMs: number;
  /** ... or once this many entries follow the previous one. */
  readonly everyEntries: number;
  /** How often the head is read (default: 5 s, or the interval when shorter). */
  readonly pollMs?: number;
  readonly log: Pick<Logger, 'info' | 'warn' | 'error'>;
  readonly now?: () => Date;
}

export interface Checkpointer {
  /** One round: reads the head, writes a checkpoint when due (or `force`d and the head moved). Never throws. */
  tick(options?: { force?: boolean }): Promise<void>;
  /** Stops polling and makes a last attempt (bounded in time) to checkpoint what is pending. */
  stop(): Promise<void>;
}

/**
 * Checkpoints the chain head from a long-running process (every worker runs one; two
 * workers writing the same seq is harmless, one file wins). It reads the head from
 * PostgreSQL, so appends by any process count. An outage of PostgreSQL, KMS or the sink is
 * logged and retried on the next poll, never thrown: the process keeps working, and the
 * pending entries are checkpointed once everything answers again.
 */
export function startAuditCheckpointer(options: CheckpointerOptions): Checkpointer {
  const now = options.now ?? (() => new Date());
  const pollMs = options.pollMs ?? Math.min(5_000, options.intervalMs);
  let last: { seq: bigint; at: number } | undefined;
  let failing = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const round = async (force: boolean) => {
    if (!last) {
      const stored = await newestStored(options.sink);
      last = stored ? { seq: BigInt(stored.seq), at: Date.parse(stored.createdAt) } : { seq: 0n, at: 0 };
    }
    const head = await chainHead(options.db);
    if (!head || BigInt(head.seq) <= last.seq) return;
    const due = force || now().getTime() - last.at >= options.intervalMs || (await entriesAfter(options.db, last.seq)) >= options.everyEntries;
    if (!due) return;
    const { outcome, checkpoint } = await writeCheckpoint(options, head, now());
    if (outcome === 'conflict') {
      auditVerifyFailures.inc({ kind: 'checkpoint-conflict' });
      options.log.error({ seq: head.seq }, 'audit chain head differs from its signed checkpoint: run `ledgerlock audit verify`');
    }
    last = { seq: BigInt(head.seq), at: Date.parse(checkpoint.createdAt) };
  };

  const tick = (tickOptions: { force?: boolean } = {}): Promise<void> => {
    const previous = running ?? Promise.resolve();
    const next = previous.then(async () => {
      try {
        await round(tickOptions.force ?? false);
        if (failing) options.log.info('audit checkpoints written again');
        failing = false;
      } catch (err) {
        // Once per outage, not once per poll; the reason names no content (SDK and pg messages).
        if (!failing) options.log.warn({ reason: errorMessage(err) }, 'audit checkpoint failed; retrying');
        failing = true;
        last = undefined;
      }
    });
    running = next;
    return next;
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      void tick().finally(schedule);
    }, pollMs);
    timer.unref();
  };
  void tick().finally(schedule);

  return {
    tick,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      const final = tick({ force: true });
      await Promise.race([final, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
    },
  };
}

async function entriesAfter(db: Db, seq: bigint): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from audit_log where seq > ${seq.toString()}`.execute(db);
  return Number(rows[0]!.n);
}

/** The checkpointer a worker runs for `config`. */
export function startConfiguredCheckpointer(config: Config, deps: { db: Db; kms: KMSClient; log: CheckpointerOptions['log'] }): Checkpointer {
  return startAuditCheckpointer({
    db: deps.db,
    kms: deps.kms,
    sink: checkpointSinkFor(config),
    keyId: auditCheckpointKeyAlias(config),
    database: databaseName(config.databaseAppUrl),
    intervalMs: config.auditCheckpoints.intervalMs,
    everyEntries: config.auditCheckpoints.everyEntries,
    log: deps.log,
  });
}
