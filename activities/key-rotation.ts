import { createHash, timingSafeEqual } from 'node:crypto';
import {
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  KMSInvalidStateException,
  NotFoundException,
  ReEncryptCommand,
  ScheduleKeyDeletionCommand,
  UpdateAliasCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { sql } from 'kysely';
import { codecKeyAlias, masterKeyAlias, type Config } from '../src/config/config';
import { encryptionContext } from '../src/crypto/data-keys';
import { mapKmsError } from '../src/crypto/kms-errors';
import type { Db } from '../src/db/database';
import { unpromotedRotation } from '../src/keys/key-rotation-dal';
import type { RotationPlan, RotationTarget } from '../workflows/key-rotation-contracts';
import { GRACE_PERIOD_STAGE, KEY_ROTATION_FAILURE } from '../workflows/key-rotation-contracts';

/**
 * Key rotation activities: KMS and PostgreSQL only, on the general task queue. Each is
 * idempotent, keyed by the rotation id: a retry, or a worker resuming after a crash, finds
 * what was done and carries on. Key ids appear in results and audit details; key material
 * never leaves KMS except as the data keys' plaintext during verification, which is
 * compared by fingerprint and zeroed.
 */

export interface KeyRotationDeps {
  readonly db: Db;
  readonly kms: Pick<KMSClient, 'send'>;
  readonly config: Pick<Config, 'kms' | 'regions' | 'keyRotation' | 'dataKeyCache'>;
}

/** Where a batch loop stands; heartbeated, so a retried activity resumes after it. */
interface Cursor {
  readonly afterId: string | null;
  readonly done: number;
}

const KMS_DELETION_WINDOW_DAYS = 30;

export function createKeyRotationActivities(deps: KeyRotationDeps) {
  const kms = async <T>(operation: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      throw mapKmsError(err, operation);
    }
  };
  // Key ARNs throughout: KMS names the key of a GenerateDataKey or ReEncrypt by its ARN, and data_keys stores that.
  const targetKeyId = async (alias: string): Promise<string> => (await kms('DescribeKey', () => deps.kms.send(new DescribeKeyCommand({ KeyId: alias })))).KeyMetadata!.Arn!;
  const setStage = (rotationId: string, stage: string) => deps.db.updateTable('key_rotations').set({ stage }).where('id', '=', rotationId).execute();
  /** Running rotations that promoted their keys and wait out their grace period: the next one may start, and ends it. */
  const inGrace = async (except: string) =>
    (await deps.db.selectFrom('key_rotations').select('id').where('status', '=', 'running').where('promoted_at', 'is not', null).where('id', '!=', except).orderBy('started_at').execute()).map((r) => r.id);

  return {
    /** What this rotation rotates (every region's master key and the payload codec's), pinned in the history. */
    async planRotation(input: { readonly emergency?: boolean } = {}): Promise<RotationPlan> {
      const targets: RotationTarget[] = [
        ...deps.config.regions.map((region) => ({ alias: masterKeyAlias(deps.config, region), purpose: 'region' as const, region })),
        { alias: codecKeyAlias(deps.config), purpose: 'codec' as const, region: null },
      ];
      // A key suspected compromised stays decrypt-only only as long as a cached plaintext data key may live.
      const emergencyGrace = Math.ceil(deps.config.dataKeyCache.maxAgeMs / 1000);
      const graceSeconds = input.emergency ? Math.min(deps.config.keyRotation.graceSeconds, emergencyGrace) : deps.config.keyRotation.graceSeconds;
      return { targets, graceSeconds, batchSize: deps.config.keyRotation.batchSize };
    },

    /** Records the rotation as running; refused (for good) while another one runs. */
    /**
     * Records the rotation as running, unless another one runs that has not promoted yet.
     * Answers the promoted rotations still waiting out their grace period: this one ends them.
     */
    async beginRotation(input: { readonly rotationId: string; readonly requestedBy: string }): Promise<{ graceToEnd: string[] }> {
      const unpromoted = await unpromotedRotation(deps.db);
      if (unpromoted && unpromoted.id !== input.rotationId) throw alreadyRunning(unpromoted.id);
      if (!unpromoted) {
        try {
          // Every active data key, all regions: what the progress counts against.
          const total = await countActive(deps.db);
          await deps.db.insertInto('key_rotations').values({ id: input.rotationId, status: 'running', stage: 'starting', requested_by: input.requestedBy, total_keys: total, failure: null, finished_at: null }).execute();
        } catch (err) {
          // Lost a race with another rotation starting at the same moment (or this one already exists).
          const row = await deps.db
            .selectFrom('key_rotations')
            .select(['id', 'status'])
            .where((eb) => eb.or([eb.and([eb('status', '=', 'running'), eb('promoted_at', 'is', null)]), eb('id', '=', input.rotationId)]))
            .orderBy(sql`id = ${input.rotationId}`, 'desc')
            .executeTakeFirst();
          if (row && row.id !== input.rotationId) throw alreadyRunning(row.id);
          if (row?.id === input.rotationId && row.status !== 'running') {
            throw ApplicationFailure.create({ type: KEY_ROTATION_FAILURE.alreadyFinished, nonRetryable: true, message: `rotation ${input.rotationId} has already finished` });
          }
          if (!row) throw err;
        }
      }
      return { graceToEnd: await inGrace(input.rotationId) };
    },
    async createMasterKey(input: { readonly rotationId: string; readonly target: RotationTarget }): Promise<{ newKeyId: string; previousKeyId: string }> {
      const { alias, purpose, region } = input.target;
      await setStage(input.rotationId, `creating a master key for ${alias}`);
      const current = await targetKeyId(alias);
      const recorded = await deps.db.selectFrom('key_versions').select(['kms_key_id', 'status']).where('rotation_id', '=', input.rotationId).where('alias', '=', alias).executeTakeFirst();
      if (recorded?.kms_key_id) {
        // A retry after the alias already moved (promotion ran) must still name the old key.
        const previous = await deps.db.selectFrom('key_versions').select('kms_key_id').where('alias', '=', alias).where('status', 'in', ['active', 'decrypt_only']).where('kms_key_id', '!=', recorded.kms_key_id).orderBy('created_at', 'desc').executeTakeFirst();
        return { newKeyId: recorded.kms_key_id, previousKeyId: current === recorded.kms_key_id ? previous!.kms_key_id! : current };
      }
      await deps.db
        .insertInto('key_versions')
        .values({ alias, purpose, region, kms_key_id: current, rotation_id: null, status: 'active', promoted_at: null, retired_at: null })
        .onConflict((oc) => oc.column('alias').where('status', '=', 'active').doNothing())
        .execute();
      await deps.db
        .insertInto('key_versions')
        .values({ alias, purpose, region, kms_key_id: null, rotation_id: input.rotationId, status: 'creating', promoted_at: null, retired_at: null })
        .onConflict((oc) => oc.columns(['rotation_id', 'alias']).where('rotation_id', 'is not', null).doNothing())
        .execute();
      const created = await kms('CreateKey', () =>
        deps.kms.send(
          new CreateKeyCommand({
            Description: `Ledgerlock master key for ${purpose === 'codec' ? 'Temporal payloads' : `region ${region}`}, rotation ${input.rotationId}`,
            KeySpec: 'SYMMETRIC_DEFAULT',
            KeyUsage: 'ENCRYPT_DECRYPT',
          }),
        ),
      );
      const newKeyId = created.KeyMetadata!.Arn!;
      await deps.db.updateTable('key_versions').set({ kms_key_id: newKeyId, status: 'pending' }).where('rotation_id', '=', input.rotationId).where('alias', '=', alias).execute();
      return { newKeyId, previousKeyId: current };
    },

    /**
     * Compensation of createMasterKey: the new key is disabled and scheduled for deletion,
     * its version marked failed, the pending wraps made under it dropped. The alias was
     * never moved (or has been moved back by then).
     */
    async discardNewMasterKey(input: { readonly rotationId: string; readonly target: RotationTarget }): Promise<{ discardedKeyId: string | null }> {
      const version = await deps.db.selectFrom('key_versions').select('kms_key_id').where('rotation_id', '=', input.rotationId).where('alias', '=', input.target.alias).executeTakeFirst();
      if (input.target.region !== null) {
        await deps.db
          .updateTable('data_keys')
          .set({ pending_wrapped_key: null, pending_kms_key_id: null, pending_rotation_id: null })
          .where('pending_rotation_id', '=', input.rotationId)
          .where('region', '=', input.target.region)
          .execute();
      }
      await deps.db.updateTable('key_versions').set({ status: 'failed' }).where('rotation_id', '=', input.rotationId).where('alias', '=', input.target.alias).execute();
      const keyId = version?.kms_key_id ?? null;
      if (keyId) {
        await ignoreGone(() => deps.kms.send(new DisableKeyCommand({ KeyId: keyId })), 'DisableKey');
        await ignoreGone(() => deps.kms.send(new ScheduleKeyDeletionCommand({ KeyId: keyId, PendingWindowInDays: KMS_DELETION_WINDOW_DAYS })), 'ScheduleKeyDeletion');
      }
      return { discardedKeyId: keyId };
    },

    /**
     * Re-wraps every active data key of the region from its master key to the new one
     * (KMS ReEncrypt: the plaintext never leaves KMS), in batches, keeping the current wrap
     * until promotion. Heartbeats its cursor after each batch: a retried attempt resumes
     * there, and a key already re-wrapped for this rotation is never wrapped again.
     */
    async rewrapDataKeys(input: { readonly rotationId: string; readonly region: string; readonly newKeyId: string; readonly batchSize: number }): Promise<{ rewrapped: number }> {
      await setStage(input.rotationId, `re-wrapping data keys of region ${input.region}`);
      const context = Context.current();
      const resumed = (context.info.heartbeatDetails as Cursor | undefined) ?? { afterId: null, done: 0 };
      let cursor: Cursor = resumed;
      for (;;) {
        let query = deps.db
          .selectFrom('data_keys')
          .select(['id', 'customer_id', 'region', 'kms_key_id', 'wrapped_key'])
          .where('region', '=', input.region)
          .where('status', '=', 'active')
          .where((eb) => eb.or([eb('pending_rotation_id', 'is', null), eb('pending_rotation_id', '!=', input.rotationId)]))
          .where('kms_key_id', '!=', input.newKeyId)
          .orderBy('id')
          .limit(input.batchSize);
        if (cursor.afterId) query = query.where('id', '>', cursor.afterId);
        const batch = await query.execute();
        if (batch.length === 0) break;
        const wraps = await Promise.all(
          batch.map(async (row) => {
            const context = encryptionContext(row);
            const result = await kms('ReEncrypt', () =>
              deps.kms.send(
                new ReEncryptCommand({
                  CiphertextBlob: row.wrapped_key!,
                  SourceKeyId: row.kms_key_id,
                  SourceEncryptionContext: context,
                  DestinationKeyId: input.newKeyId,
                  DestinationEncryptionContext: context,
                }),
              ),
            );
            return { id: row.id, wrapped: Buffer.from(result.CiphertextBlob!) };
          }),
        );
        await deps.db.transaction().execute(async (tx) => {
          for (const wrap of wraps) {
            await tx
              .updateTable('data_keys')
              .set({ pending_wrapped_key: wrap.wrapped, pending_kms_key_id: input.newKeyId, pending_rotation_id: input.rotationId })
              .where('id', '=', wrap.id)
              .where('status', '=', 'active')
              .execute();
          }
          await tx.updateTable('key_rotations').set({ rewrapped_keys: sql<number>`rewrapped_keys + ${wraps.length}` }).where('id', '=', input.rotationId).execute();
        });
        cursor = { afterId: batch.at(-1)!.id, done: cursor.done + batch.length };
        context.heartbeat(cursor);
      }
      return { rewrapped: cursor.done };
    },

    /**
     * Checks every pending wrap of the region: it must unwrap under the new key to the very
     * key the current wrap holds (SHA-256 fingerprints compared in constant time), and no
     * active key may lack one. Any mismatch fails the rotation for good, naming how many
     * and the first key id, never key material.
     */
    async verifyRewrappedKeys(input: { readonly rotationId: string; readonly region: string; readonly newKeyId: string; readonly batchSize: number }): Promise<{ verified: number }> {
      await setStage(input.rotationId, `verifying data keys of region ${input.region}`);
      const context = Context.current();
      let cursor: Cursor = (context.info.heartbeatDetails as Cursor | undefined) ?? { afterId: null, done: 0 };
      const missing = await deps.db
        .selectFrom('data_keys')
        .select('id')
        .where('region', '=', input.region)
        .where('status', '=', 'active')
        .where('kms_key_id', '!=', input.newKeyId)
        .where((eb) => eb.or([eb('pending_rotation_id', 'is', null), eb('pending_rotation_id', '!=', input.rotationId)]))
        .execute();
      if (missing.length > 0) throw verificationFailed(input.region, missing.length, missing[0]!.id, 'not re-wrapped');
      for (;;) {
        let query = deps.db
          .selectFrom('data_keys')
          .select(['id', 'customer_id', 'region', 'kms_key_id', 'wrapped_key', 'pending_wrapped_key', 'pending_kms_key_id'])
          .where('region', '=', input.region)
          .where('status', '=', 'active')
          .where('pending_rotation_id', '=', input.rotationId)
          .orderBy('id')
          .limit(input.batchSize);
        if (cursor.afterId) query = query.where('id', '>', cursor.afterId);
        const batch = await query.execute();
        if (batch.length === 0) break;
        const mismatched: string[] = [];
        await Promise.all(
          batch.map(async (row) => {
            const encryption = encryptionContext(row);
            const unwrap = async (blob: Buffer, keyId: string) => {
              const out = await kms('Decrypt', () => deps.kms.send(new DecryptCommand({ CiphertextBlob: blob, KeyId: keyId, EncryptionContext: encryption })));
              const plaintext = out.Plaintext!;
              const fingerprint = createHash('sha256').update('ledgerlock:data-key-fingerprint:').update(plaintext).digest();
              plaintext.fill(0);
              return fingerprint;
            };
            try {
              const [current, pending] = await Promise.all([unwrap(row.wrapped_key!, row.kms_key_id), unwrap(row.pending_wrapped_key!, row.pending_kms_key_id!)]);
              if (row.pending_kms_key_id !== input.newKeyId || !timingSafeEqual(current, pending)) mismatched.push(row.id);
            } catch (err) {
              // A wrap KMS refuses to open under its key and context is as bad as a wrong one.
              if ((err as { retryable?: boolean }).retryable) throw err;
              mismatched.push(row.id);
            }
          }),
        );
        if (mismatched.length > 0) throw verificationFailed(input.region, mismatched.length, mismatched.sort()[0]!, 'fingerprint mismatch');
        await deps.db.updateTable('key_rotations').set({ verified_keys: sql<number>`verified_keys + ${batch.length}` }).where('id', '=', input.rotationId).execute();
        cursor = { afterId: batch.at(-1)!.id, done: cursor.done + batch.length };
        context.heartbeat(cursor);
      }
      return { verified: cursor.done };
    },

    /**
     * Promotes the new master key: the alias moves to it, and in one transaction the
     * region's data keys take their new wraps (the old ones kept as `previous_*`), the new
     * version becomes active and the old one decrypt-only. Idempotent.
     */
    async promoteMasterKey(input: { readonly rotationId: string; readonly target: RotationTarget; readonly newKeyId: string; readonly previousKeyId: string }): Promise<{ promoted: number }> {
      const { alias, region } = input.target;
      await setStage(input.rotationId, `promoting ${alias}`);
      await kms('UpdateAlias', () => deps.kms.send(new UpdateAliasCommand({ AliasName: alias, TargetKeyId: input.newKeyId })));
      return deps.db.transaction().execute(async (tx) => {
        let promoted = 0;
        if (region !== null) {
          const result = await tx
            .updateTable('data_keys')
            .set((eb) => ({
              previous_wrapped_key: eb.ref('wrapped_key'),
              previous_kms_key_id: eb.ref('kms_key_id'),
              wrapped_key: eb.ref('pending_wrapped_key'),
              kms_key_id: sql<string>`pending_kms_key_id`,
              rotation_id: input.rotationId,
              pending_wrapped_key: null,
              pending_kms_key_id: null,
              pending_rotation_id: null,
            }))
            .where('region', '=', region)
            .where('status', '=', 'active')
            .where('pending_rotation_id', '=', input.rotationId)
            .executeTakeFirst();
          promoted = Number(result.numUpdatedRows);
        }
        await tx.updateTable('key_versions').set({ status: 'decrypt_only' }).where('alias', '=', alias).where('status', '=', 'active').where('kms_key_id', '!=', input.newKeyId).execute();
        await tx.updateTable('key_versions').set({ status: 'active', promoted_at: new Date() }).where('alias', '=', alias).where('rotation_id', '=', input.rotationId).execute();
        return { promoted };
      });
    },

    /** Compensation of promoteMasterKey: the alias back on the old key, the old wraps and the old version back. */
    async demoteMasterKey(input: { readonly rotationId: string; readonly target: RotationTarget; readonly previousKeyId: string }): Promise<{ restored: number }> {
      const { alias, region } = input.target;
      await kms('UpdateAlias', () => deps.kms.send(new UpdateAliasCommand({ AliasName: alias, TargetKeyId: input.previousKeyId })));
      return deps.db.transaction().execute(async (tx) => {
        let restored = 0;
        if (region !== null) {
          const result = await tx
            .updateTable('data_keys')
            .set((eb) => ({
              wrapped_key: eb.ref('previous_wrapped_key'),
              kms_key_id: sql<string>`previous_kms_key_id`,
              rotation_id: null,
              previous_wrapped_key: null,
              previous_kms_key_id: null,
            }))
            .where('region', '=', region)
            .where('rotation_id', '=', input.rotationId)
            .where('previous_wrapped_key', 'is not', null)
            .executeTakeFirst();
          restored = Number(result.numUpdatedRows);
        }
        await tx.updateTable('key_versions').set({ status: 'failed' }).where('alias', '=', alias).where('rotation_id', '=', input.rotationId).execute();
        await tx.updateTable('key_versions').set({ status: 'active' }).where('alias', '=', alias).where('kms_key_id', '=', input.previousKeyId).where('status', '=', 'decrypt_only').execute();
        return { restored };
      });
    },

    /**
     * After the grace period: schedules the old master key's deletion (KMS keeps it for a
     * pending window) unless a data key still depends on it, say one created under the
     * alias while the rotation ran; then it stays decrypt-only for the next rotation.
     */
    async retireOldMasterKey(input: { readonly rotationId: string; readonly target: RotationTarget; readonly previousKeyId: string }): Promise<{ retired: boolean; references: number | null }> {
      const { region } = input.target;
      await setStage(input.rotationId, `retiring the old key of ${input.target.alias}`);
      if (region === null) {
        // The old codec key is referenced by every workflow history written before promotion (subscriptions live
        // for years): a worker replaying one must still decode it. Kept decrypt-only; an operator retires it
        // once no run started before the rotation is open and the namespace retention has passed.
        return { retired: false, references: null };
      }
      const refs = await deps.db.selectFrom('data_keys').select(sql<string>`count(*)`.as('n')).where('status', '=', 'active').where('kms_key_id', '=', input.previousKeyId).executeTakeFirstOrThrow();
      const references = Number(refs.n);
      if (references > 0) return { retired: false, references };
      await deps.db.updateTable('data_keys').set({ previous_wrapped_key: null, previous_kms_key_id: null }).where('previous_kms_key_id', '=', input.previousKeyId).execute();
      try {
        await deps.kms.send(new ScheduleKeyDeletionCommand({ KeyId: input.previousKeyId, PendingWindowInDays: KMS_DELETION_WINDOW_DAYS }));
      } catch (err) {
        // Already pending deletion (a retried attempt): done.
        if (!(err instanceof KMSInvalidStateException)) throw mapKmsError(err, 'ScheduleKeyDeletion');
      }
      await deps.db.updateTable('key_versions').set({ status: 'retired', retired_at: new Date() }).where('kms_key_id', '=', input.previousKeyId).where('status', '=', 'decrypt_only').execute();
      return { retired: true, references: 0 };
    },

    async finishRotation(input: { readonly rotationId: string; readonly status: 'completed' | 'failed'; readonly failure?: string }): Promise<void> {
      await deps.db
        .updateTable('key_rotations')
        .set({ status: input.status, stage: input.status, failure: input.failure ?? null, finished_at: new Date() })
        .where('id', '=', input.rotationId)
        .where('status', '=', 'running')
        .execute();
    },

    async setRotationStage(input: { readonly rotationId: string; readonly stage: string }): Promise<void> {
      if (input.stage !== GRACE_PERIOD_STAGE) return void (await setStage(input.rotationId, input.stage));
      // Promoted: from now on the next rotation may start.
      await deps.db.updateTable('key_rotations').set({ stage: input.stage, promoted_at: sql`coalesce(promoted_at, now())` }).where('id', '=', input.rotationId).execute();
    },
  };
}

async function countActive(db: Db): Promise<number> {
  const row = await db.selectFrom('data_keys').select(sql<string>`count(*)`.as('n')).where('status', '=', 'active').executeTakeFirstOrThrow();
  return Number(row.n);
}

async function ignoreGone(run: () => Promise<unknown>, operation: string): Promise<void> {
  try {
    await run();
  } catch (err) {
    if (err instanceof NotFoundException || err instanceof KMSInvalidStateException) return;
    throw mapKmsError(err, operation);
  }
}

function alreadyRunning(runningId: string): ApplicationFailure {
  return ApplicationFailure.create({ type: KEY_ROTATION_FAILURE.alreadyRunning, nonRetryable: true, message: `key rotation ${runningId} is running; one at a time`, details: [{ runningId }] });
}

function verificationFailed(region: string, count: number, firstKeyId: string, what: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: KEY_ROTATION_FAILURE.verificationFailed,
    nonRetryable: true,
    message: `${count} data key(s) of region ${region} failed verification (${what}), first ${firstKeyId}`,
    details: [{ region, count, firstKeyId }],
  });
}
