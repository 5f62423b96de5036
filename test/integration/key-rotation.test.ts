import { EncryptCommand } from '@aws-sdk/client-kms';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { encryptionContext } from '../../src/crypto/data-keys';
import { rotationStatus, startKeyRotation, RotationAlreadyRunningError } from '../../src/keys/key-rotation-service';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import { KEY_ROTATION_FAILURE, type RotationProgress } from '../../workflows/key-rotation-contracts';
import { rotationWorld, type RotationWorld } from '../support/rotation-stack';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { spawnCli } from '../support/spawn';
import { tokenFor } from '../support/tokens';

/**
 * The rotation saga over a database of thousands of customers (one is erased during the
 * first rotation's grace period; the later tests count 1,999), with the real activities,
 * the local KMS and PostgreSQL, in a world of its own (database and master keys).
 */
describe('key rotation', () => {
  let world: RotationWorld;
  let client: Client;
  let workers: Awaited<ReturnType<typeof createTestWorkers>>;
  let release: () => void;
  let running: Promise<unknown>;

  beforeAll(async () => {
    world = await rotationWorld('rotation', 2000);
    client = await connectClient(world.config, world.services.dataConverter);
    workers = await createTestWorkers(world.config);
    running = runWorkersUntil(workers.workers, new Promise<void>((resolve) => (release = resolve)));
  }, 300_000);
  afterAll(async () => {
    release?.();
    await running;
    await workers?.close();
    await client?.connection.close();
    await world?.close();
  });

  const versions = () => world.owner.selectFrom('key_versions').selectAll().execute();

  it('re-wraps every data key under new master keys, keeps every record readable, then retires the old keys', async () => {
    const before = await world.fingerprints();
    expect(before.size).toBe(2000);
    const oldTargets = new Map(await Promise.all(world.aliases().map(async (alias) => [alias, await world.aliasTarget(alias)] as const)));
    // A payload encoded under the old codec key, to read back during the grace period.
    const codec = world.services.dataConverter.payloadCodecs![0]!;
    const [oldPayload] = await codec.encode([{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{"invoice":"in_old"}') }]);

    const rotationId = await startKeyRotation(client, world.services.db, world.config, 'svc-security');
    const handle = client.workflow.getHandle(rotationId);
    // During the grace period: promoted, old keys still there to decrypt with.
    await vi.waitFor(async () => expect((await handle.query<RotationProgress>('rotationProgress')).stage).toBe('grace'), { timeout: 180_000, interval: 250 });
    const [decoded] = await codec.decode([oldPayload!]);
    expect(decoded!.data!.toString()).toBe('{"invoice":"in_old"}');
    // Erasure during the grace period shreds every wrap of the customer's key, the one promotion kept included.
    const erased = await world.owner.selectFrom('data_keys').select(['id', 'customer_id']).where('status', '=', 'active').where('previous_wrapped_key', 'is not', null).executeTakeFirstOrThrow();
    await world.services.dataKeys.destroyForCustomer(erased.customer_id);
    expect(await world.owner.selectFrom('data_keys').select(['wrapped_key', 'pending_wrapped_key', 'previous_wrapped_key']).where('id', '=', erased.id).executeTakeFirst()).toEqual({
      wrapped_key: null,
      pending_wrapped_key: null,
      previous_wrapped_key: null,
    });
    before.delete(erased.id);
    for (const [, oldKeyId] of oldTargets) expect(await world.keyState(oldKeyId)).toBe('Enabled');

    const result = (await handle.result()) as RotationProgress;
    expect(result.stage).toBe('completed');
    const codecAlias = world.aliases().at(-1)!;
    // Region keys retire; the codec key stays decrypt-only: histories written before the rotation still name it.
    for (const target of result.targets) expect([target.alias, target.promoted, target.retirement]).toEqual([target.alias, true, target.region === null ? 'kept' : 'retired']);
    const [afterwards] = await codec.decode([oldPayload!]);
    expect(afterwards!.data!.toString()).toBe('{"invoice":"in_old"}');

    // Every alias points at its new key; the old region keys are pending deletion.
    for (const target of result.targets) {
      expect(await world.aliasTarget(target.alias)).toBe(target.newKeyId);
      expect(target.previousKeyId).toBe(oldTargets.get(target.alias));
      expect(await world.keyState(target.previousKeyId!)).toBe(target.alias === codecAlias ? 'Enabled' : 'PendingDeletion');
    }
    // Every data key is wrapped by its region's new master key, once, and unwraps to the same key as before.
    const rows = await world.owner.selectFrom('data_keys').select(['id', 'region', 'kms_key_id', 'rotation_id', 'pending_wrapped_key', 'previous_wrapped_key']).where('status', '=', 'active').execute();
    const newKeyOf = new Map(result.targets.map((t) => [t.region, t.newKeyId]));
    for (const row of rows) {
      expect(row).toMatchObject({ kms_key_id: newKeyOf.get(row.region), rotation_id: rotationId, pending_wrapped_key: null, previous_wrapped_key: null });
    }
    expect(await world.fingerprints()).toEqual(before);
    expect(await world.decryptable()).toBe(1999);

    const byAlias = new Map<string, string[]>();
    for (const v of await versions()) byAlias.set(v.alias, [...(byAlias.get(v.alias) ?? []), v.status].sort());
    for (const alias of world.aliases()) expect(byAlias.get(alias)).toEqual(alias === codecAlias ? ['active', 'decrypt_only'] : ['active', 'retired']);

    const status = await rotationStatus(client, world.services.db, rotationId);
    expect(status).toMatchObject({ status: 'completed', totalKeys: 2000, rewrappedKeys: 2000, verifiedKeys: 2000 });
    // Audited with key ids, never key material.
    const audit = await world.owner.selectFrom('audit_log').select(['action', 'details']).where('subject_id', '=', rotationId).execute();
    expect(audit.map((a) => (a.details as { step: string }).step)).toEqual(expect.arrayContaining(['started', 'completed', `promoted:${world.aliases()[0]}`]));
    const fields = new Set(audit.flatMap((a) => Object.keys(a.details as object)));
    expect([...fields].sort()).toEqual(expect.arrayContaining(['alias', 'kmsKeyId', 'step']));
    for (const field of fields) expect(['step', 'alias', 'kmsKeyId', 'previousKmsKeyId', 'dataKeys', 'targets', 'graceSeconds', 'references', 'reason']).toContain(field);
  }, 300_000);

  it('undoes everything when a re-wrapped key fails verification: aliases, active versions and wraps as they were', async () => {
    const before = await world.fingerprints();
    const oldTargets = new Map(await Promise.all(world.aliases().map(async (alias) => [alias, await world.aliasTarget(alias)] as const)));
    const rotationId = await startKeyRotation(client, world.services.db, world.config, 'svc-security');

    // Once the first pass is done, the last key of the last region gets a wrap of another key: it unwraps, but to the wrong key.
    await vi.waitFor(
      async () => {
        const row = await world.owner.selectFrom('key_rotations').select(['rewrapped_keys', 'total_keys']).where('id', '=', rotationId).executeTakeFirstOrThrow();
        expect(row.rewrapped_keys).toBeGreaterThanOrEqual(row.total_keys);
      },
      { timeout: 120_000, interval: 100 },
    );
    const victim = await world.owner.selectFrom('data_keys').select(['id', 'customer_id', 'region', 'pending_kms_key_id']).where('region', '=', 'us').where('status', '=', 'active').orderBy('id', 'desc').executeTakeFirstOrThrow();
    const forged = await world.kms.send(new EncryptCommand({ KeyId: victim.pending_kms_key_id!, Plaintext: randomBytes(32), EncryptionContext: encryptionContext(victim) }));
    await world.owner.updateTable('data_keys').set({ pending_wrapped_key: Buffer.from(forged.CiphertextBlob!) }).where('id', '=', victim.id).execute();

    const err = await client.workflow.getHandle(rotationId).result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as { cause?: { type?: string; message?: string } };
    expect(cause.cause?.type).toBe(KEY_ROTATION_FAILURE.verificationFailed);
    expect(cause.cause?.message).toContain(victim.id);

    for (const [alias, oldKeyId] of oldTargets) expect(await world.aliasTarget(alias)).toBe(oldKeyId);
    const mine = (await versions()).filter((v) => v.rotation_id === rotationId);
    expect(mine.map((v) => v.status)).toEqual(mine.map(() => 'failed'));
    for (const v of mine) expect(['Disabled', 'PendingDeletion']).toContain(await world.keyState(v.kms_key_id!));
    for (const [alias, oldKeyId] of oldTargets) {
      expect((await versions()).find((v) => v.alias === alias && v.status === 'active')?.kms_key_id).toBe(oldKeyId);
    }
    const leftovers = await world.owner.selectFrom('data_keys').select('id').where('pending_rotation_id', '=', rotationId).execute();
    expect(leftovers).toEqual([]);
    expect(await world.fingerprints()).toEqual(before);
    expect(await world.decryptable()).toBe(1999);
    expect(await rotationStatus(client, world.services.db, rotationId)).toMatchObject({ status: 'failed', failure: expect.stringContaining('KeyRotationVerificationFailed') });
  }, 300_000);

  it('`ledgerlock keys rotate` starts one and draws its progress until it ends', async () => {
    const cli = spawnCli(['keys', 'rotate', '--wait-retirement'], world.env);
    expect(await cli.exited, cli.stderr()).toBe(0);
    const rotationId = /key rotation (key-rotation:[0-9a-f-]+) started/.exec(cli.stdout())?.[1];
    expect(rotationId).toBeDefined();
    expect(cli.stdout()).toContain(`key rotation ${rotationId} completed`);
    // Not a terminal: one line per change, the bar filling up to 100%.
    const lines = cli.stderr().trim().split('\n');
    expect(lines.some((l) => /^\[#*-+\] +\d+% re-wrapping data keys of region (eu|us) \(\d+\/1999 re-wrapped, \d+ verified\)$/.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^\[#{30}\] 100% completed/);
    expect(await world.decryptable()).toBe(1999);
  }, 300_000);

  it('refuses a second rotation while one runs, through the service, the API and the workflow itself', async () => {
    const first = await startKeyRotation(client, world.services.db, world.config, 'svc-security');
    await vi.waitFor(async () => expect(await world.owner.selectFrom('key_rotations').select('status').where('id', '=', first).executeTakeFirst()).toEqual({ status: 'running' }), {
      timeout: 30_000,
    });
    await expect(startKeyRotation(client, world.services.db, world.config, 'svc-other')).rejects.toBeInstanceOf(RotationAlreadyRunningError);

    const api = await startTestApi(world.config);
    try {
      const token = await tokenFor(world.config, 'svc-security', ['keys:rotate']);
      const refused = await fetch(`${api.url}/v1/key-rotations`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      expect(refused.status).toBe(409);
      expect(await refused.json()).toMatchObject({ runningRotationId: first });
      const shown = await fetch(`${api.url}/v1/key-rotations/${encodeURIComponent(first)}`, { headers: { authorization: `Bearer ${token}` } });
      expect(shown.status).toBe(200);
      expect(await shown.json()).toMatchObject({ rotationId: first, status: 'running', totalKeys: 1999 });
      const noScope = await tokenFor(world.config, 'svc-billing', ['subscriptions:read']);
      expect((await fetch(`${api.url}/v1/key-rotations`, { method: 'POST', headers: { authorization: `Bearer ${noScope}` } })).status).toBe(403);
    } finally {
      await api.stop();
    }

    // Started behind the service's back (as the schedule would): the workflow refuses itself.
    const direct = await client.workflow.start('keyRotationWorkflow', { taskQueue: world.config.temporal.taskQueue, workflowId: `key-rotation:direct-${Date.now()}`, args: [{ requestedBy: 'schedule:key-rotation' }] });
    const err = await direct.result().catch((e: unknown) => e);
    expect(((err as WorkflowFailedError).cause as { cause?: { type?: string } }).cause?.type).toBe(KEY_ROTATION_FAILURE.alreadyRunning);

    expect(((await client.workflow.getHandle(first).result()) as RotationProgress).stage).toBe('completed');
    expect(await world.decryptable()).toBe(1999);
  }, 300_000);
});
