import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KMSClient } from '@aws-sdk/client-kms';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAuditEntry, verifyAuditChain } from '../../src/audit/audit-dal';
import { auditHash } from '../../src/audit/audit-hash';
import { DirectoryCheckpointSink } from '../../src/audit/audit-checkpoint-sink';
import { checkpointName, checkpointSinkFor, databaseName, startAuditCheckpointer, writeCheckpoint, type AuditCheckpoint } from '../../src/audit/audit-checkpoints';
import { auditCheckpointKeyAlias, type Config } from '../../src/config/config';
import { createDb, dropDatabase, ensureDatabase, type AuditLogRow, type Db } from '../../src/db/database';
import type { LogFields } from '../../src/log';
import { migrate } from '../../src/db/migrate';
import { createKmsClient, ensureMasterKeys } from '../../src/kms/kms-client';
import { startLocalServers, type LocalServers } from '../../src/stack/local-servers';
import { freePort } from '../../src/stack/process';
import { spawnCli } from '../support/spawn';
import { testConfig, testEnv, testStack } from '../support/stack';

async function runVerify(databaseUrl: string): Promise<{ code: number | null; out: string }> {
  const cli = spawnCli(['audit', 'verify'], testEnv({ DATABASE_URL: databaseUrl }));
  const code = await cli.exited;
  // stdout only: stderr may carry the AWS SDK's Node.js version notice.
  return { code, out: cli.stdout() };
}

function recordingLog() {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  // pino's order: fields first, when there are any.
  const at = (level: string) => (first: LogFields | string, msg?: string) =>
    void lines.push(typeof first === 'string' ? { level, msg: first } : { level, msg: msg!, fields: first });
  return { lines, info: at('info'), warn: at('warn'), error: at('error') };
}

async function rows(owner: Db): Promise<AuditLogRow[]> {
  return owner.selectFrom('audit_log').selectAll().orderBy('seq').execute();
}

/** Puts rows back exactly as they were (the owner may; the identity column needs OVERRIDING). */
async function restore(owner: Db, saved: readonly AuditLogRow[]): Promise<void> {
  await sql`delete from audit_log`.execute(owner);
  for (const row of saved) {
    await sql`insert into audit_log (seq, idempotency_key, occurred_at, actor, action, subject_type, subject_id, purpose, details, prev_hash, hash)
      overriding system value values (${row.seq}, ${row.idempotency_key}, ${row.occurred_at.toISOString()}, ${row.actor}, ${row.action},
      ${row.subject_type}, ${row.subject_id}, ${row.purpose}, ${JSON.stringify(row.details)}, ${row.prev_hash}, ${row.hash})`.execute(owner);
  }
}

describe('signed audit checkpoints', () => {
  // A database of its own: these tests rewrite its audit trail as the owner.
  const url = new URL(testStack().databaseUrl);
  url.pathname = `${url.pathname}_checkpoints`;
  const databaseUrl = url.toString();
  let config: Config;
  let owner: Db;
  let app: Db;
  let kms: KMSClient;

  beforeAll(async () => {
    await ensureDatabase(databaseUrl);
    owner = createDb(databaseUrl, { max: 2 });
    await migrate(owner);
    config = testConfig({ DATABASE_URL: databaseUrl });
    app = createDb(config.databaseAppUrl, { max: 2 });
    kms = createKmsClient(config);
  });
  afterAll(async () => {
    kms?.destroy();
    await app?.destroy();
    await owner?.destroy();
    await dropDatabase(databaseUrl);
  });

  it('are written by the checkpointer every N entries, once per seq, read-only, outside PostgreSQL', async () => {
    const sink = checkpointSinkFor(config);
    const log = recordingLog();
    const checkpointer = startAuditCheckpointer({
      db: app,
      kms,
      sink,
      keyId: auditCheckpointKeyAlias(config),
      database: databaseName(config.databaseAppUrl),
      intervalMs: 3_600_000,
      everyEntries: 3,
      pollMs: 60_000,
      log,
    });
    try {
      const entry = (n: number) => ({ idempotencyKey: `wf-cp:step-${n}`, actor: 'workflow:wf-cp', action: 'saga.step', subjectType: 'subscription', subjectId: 'sub_cp', details: { n } });
      // The first round finds no checkpoint, so one is due at once for what exists.
      await appendAuditEntry(app, entry(1));
      await checkpointer.tick();
      expect(await sink.list()).toEqual([checkpointName('1')]);
      // Two more entries: fewer than N since the last checkpoint, and the interval is an hour away.
      for (const n of [2, 3]) await appendAuditEntry(app, entry(n));
      await checkpointer.tick();
      expect(await sink.list()).toEqual([checkpointName('1')]);
      // The third: N entries since the last checkpoint.
      await appendAuditEntry(app, entry(4));
      await checkpointer.tick();
      expect((await sink.list()).sort()).toEqual([checkpointName('1'), checkpointName('4')]);
      for (const n of [5, 6]) await appendAuditEntry(app, entry(n));
    } finally {
      // Stopping signs what is pending, whatever N says.
      await checkpointer.stop();
    }
    expect((await sink.list()).sort()).toEqual([checkpointName('1'), checkpointName('4'), checkpointName('6')]);
    expect(log.lines).toEqual([]);

    const dir = path.join(config.auditCheckpoints.dir, databaseName(databaseUrl));
    const stored = JSON.parse(readFileSync(path.join(dir, checkpointName('6')), 'utf8')) as AuditCheckpoint;
    const head = (await rows(owner)).at(-1)!;
    expect(stored).toMatchObject({ format: 'ledgerlock.audit-checkpoint.v1', database: databaseName(databaseUrl), seq: '6', hash: head.hash });
    expect(Buffer.from(stored.mac, 'base64')).toHaveLength(32);
    // No stray temporary files, and nothing may be rewritten in place.
    expect(readdirSync(dir).sort()).toEqual([checkpointName('1'), checkpointName('4'), checkpointName('6')]);
    for (const name of readdirSync(dir)) expect(statSync(path.join(dir, name)).mode & 0o777, name).toBe(0o444);
    const again = await writeCheckpoint({ db: app, kms, sink, keyId: auditCheckpointKeyAlias(config), database: databaseName(databaseUrl) }, head, new Date());
    expect(again.outcome).toBe('exists');
    expect(readFileSync(path.join(dir, checkpointName('6')), 'utf8')).toBe(`${JSON.stringify(stored, null, 2)}\n`);

    const intact = await runVerify(databaseUrl);
    expect(intact.code).toBe(0);
    expect(intact.out).toBe(`audit trail intact: 6 entries, 3 signed checkpoints, the newest for entry #6 at ${stored.createdAt}\n`);
  });

  it('let `audit verify` name an edited entry, a deleted entry, a truncated tail and a rewritten chain', async () => {
    const saved = await rows(owner);
    expect(saved).toHaveLength(6);

    // Edited: the chain finds it.
    await sql`update audit_log set details = '{"n": 300}' where seq = 3`.execute(owner);
    const edited = await runVerify(databaseUrl);
    expect(edited.code).toBe(1);
    expect(edited.out).toBe('audit trail broken at entry #3: its content does not match its hash (an edited entry)\n');
    await restore(owner, saved);

    // Deleted from the middle: the chain finds it.
    await sql`delete from audit_log where seq = 2`.execute(owner);
    const deleted = await runVerify(databaseUrl);
    expect(deleted.code).toBe(1);
    expect(deleted.out).toBe('audit trail broken at entry #3: entry #2 is missing (a deleted entry)\n');
    await restore(owner, saved);

    // Truncated tail: the chain that is left is whole, but checkpoint #6 outlives it.
    await sql`delete from audit_log where seq > 4`.execute(owner);
    expect(await verifyAuditChain(owner)).toEqual({ ok: true, entries: 4 });
    const truncated = await runVerify(databaseUrl);
    expect(truncated.code).toBe(1);
    expect(truncated.out).toMatch(/^audit trail broken at the end of the chain \(entry #4\): the checkpoint signed at \S+ vouches for entry #6 \(a truncated tail: the newest entries were deleted\)\n$/);
    await restore(owner, saved);

    // Rewritten and rehashed from the first entry on: every link holds, no checkpoint matches.
    let prevHash = '0'.repeat(64);
    for (const row of saved) {
      const content = { ...row, occurred_at: row.occurred_at.toISOString(), actor: row.seq === '2' ? 'workflow:someone-else' : row.actor };
      const hash = auditHash(prevHash, content);
      await sql`update audit_log set actor = ${content.actor}, prev_hash = ${prevHash}, hash = ${hash} where seq = ${row.seq}`.execute(owner);
      prevHash = hash;
    }
    expect(await verifyAuditChain(owner)).toEqual({ ok: true, entries: 6 });
    const rewritten = await runVerify(databaseUrl);
    expect(rewritten.code).toBe(1);
    expect(rewritten.out).toMatch(/^audit trail broken at entry #4: it is not the entry the checkpoint signed at \S+ vouches for \(the chain was rewritten and rehashed\)\n$/);
    await restore(owner, saved);

    expect((await runVerify(databaseUrl)).code).toBe(0);
  });

  it('refuse a checkpoint KMS did not sign, or one signed for another database', async () => {
    const dir = path.join(config.auditCheckpoints.dir, databaseName(databaseUrl));
    const genuine = JSON.parse(readFileSync(path.join(dir, checkpointName('6')), 'utf8')) as AuditCheckpoint;
    const head = (await rows(owner)).at(-1)!;

    // A forger who rewrote the chain and appended, then wrote their own checkpoint with a made-up MAC.
    const forged: AuditCheckpoint = { ...genuine, seq: '7', hash: head.hash, mac: Buffer.alloc(32, 7).toString('base64') };
    const foreignDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-foreign-'));
    try {
      // A genuine checkpoint, but of another database: moved here, it vouches for nothing.
      const other = new DirectoryCheckpointSink(foreignDir);
      const foreign = await writeCheckpoint({ db: app, kms, sink: other, keyId: auditCheckpointKeyAlias(config), database: 'another_db' }, { seq: '8', hash: head.hash }, new Date());
      expect(foreign.outcome).toBe('written');
      writeFileSync(path.join(dir, checkpointName('7')), JSON.stringify(forged));
      writeFileSync(path.join(dir, checkpointName('8')), readFileSync(path.join(foreignDir, checkpointName('8'))));
      const verdict = await runVerify(databaseUrl);
      expect(verdict.code).toBe(1);
      expect(verdict.out).toBe(
        [
          `audit trail broken at checkpoint ${checkpointName('7')}: the audit checkpoint key did not sign it for this database (a forged or foreign checkpoint)`,
          `audit trail broken at checkpoint ${checkpointName('8')}: the audit checkpoint key did not sign it for this database (a forged or foreign checkpoint)`,
          '',
        ].join('\n'),
      );
    } finally {
      rmSync(path.join(dir, checkpointName('7')), { force: true });
      rmSync(path.join(dir, checkpointName('8')), { force: true });
      rmSync(foreignDir, { recursive: true, force: true });
    }
  });

  it('keep being attempted through a KMS or PostgreSQL outage, logged once, and catch up after', async () => {
    const kmsDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-kms-outage-'));
    const sinkDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-sink-outage-'));
    const port = await freePort();
    // A local-kms of this test's own, so ensureMasterKeys may create the checkpoint key there.
    const ownKmsConfig = testConfig({ DATABASE_URL: databaseUrl, LEDGERLOCK_DATA_DIR: kmsDir, KMS_ENDPOINT: '', KMS_PORT: String(port) });
    const startKms = () => startLocalServers(ownKmsConfig, path.join(kmsDir, 'logs'));
    let server: LocalServers | undefined = await startKms();
    const ownKms = createKmsClient(ownKmsConfig);
    const unreachable = createDb(`postgres://${encodeURIComponent('ledgerlock_app')}@127.0.0.1:${await freePort()}/nowhere`, { max: 1 });
    const log = recordingLog();
    const options = { kms: ownKms, sink: new DirectoryCheckpointSink(sinkDir), keyId: auditCheckpointKeyAlias(config), database: databaseName(databaseUrl), intervalMs: 1, everyEntries: 1000, pollMs: 60_000, log };
    try {
      await ensureMasterKeys(ownKms, ownKmsConfig);
      await server.stop();
      server = undefined;
      const checkpointer = startAuditCheckpointer({ ...options, db: app });
      await checkpointer.tick();
      await checkpointer.tick();
      expect(await options.sink.list()).toEqual([]);
      expect(log.lines.map((l) => `${l.level} ${l.msg}`)).toEqual(['warn audit checkpoint failed; retrying']);
      // Never the key, the message or a MAC in the log: a reason only.
      expect(JSON.stringify(log.lines)).not.toMatch(/mac|hash/i);

      server = await startKms();
      await checkpointer.tick();
      expect(await options.sink.list()).toEqual([checkpointName('6')]);
      expect(log.lines.at(-1)).toEqual({ level: 'info', msg: 'audit checkpoints written again' });
      await checkpointer.stop();

      const noDatabase = startAuditCheckpointer({ ...options, db: unreachable, log });
      await noDatabase.tick();
      await noDatabase.stop();
      expect(log.lines.at(-1)).toMatchObject({ level: 'warn', msg: 'audit checkpoint failed; retrying' });
    } finally {
      ownKms.destroy();
      await unreachable.destroy();
      await server?.stop();
      rmSync(kmsDir, { recursive: true, force: true });
      rmSync(sinkDir, { recursive: true, force: true });
    }
  });
});
