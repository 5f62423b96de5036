import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startKeyRotation } from '../../src/keys/key-rotation-service';
import { connectClient } from '../../src/temporal/connection';
import type { RotationProgress } from '../../workflows/key-rotation-contracts';
import { rotationWorld, type RotationWorld } from '../support/rotation-stack';
import { spawnCli, type SpawnedCli } from '../support/spawn';

/**
 * The worker process is killed (SIGKILL) in the middle of re-wrapping: a new one takes the
 * batch activity over after its heartbeat times out, resumes from the heartbeated cursor,
 * and the rotation completes with every data key wrapped once, under the new key.
 */
describe('key rotation when the worker dies mid-re-wrap', () => {
  let world: RotationWorld;
  let client: Client;
  let worker: SpawnedCli | undefined;

  const startWorker = async () => {
    const started = spawnCli(['worker'], { ...world.env, LOG_LEVEL: 'info' });
    await started.waitFor('worker polling', 60_000);
    return started;
  };

  beforeAll(async () => {
    world = await rotationWorld('rotkill', 2000, { KEY_ROTATION_BATCH_SIZE: '20' });
    client = await connectClient(world.config, world.services.dataConverter);
    worker = await startWorker();
  }, 300_000);
  afterAll(async () => {
    worker?.child.kill('SIGTERM');
    await worker?.exited;
    await client?.connection.close();
    await world?.close();
  });

  it('resumes where it stopped: no data key lost, none wrapped twice', async () => {
    const before = await world.fingerprints();
    const rotationId = await startKeyRotation(client, world.services.db, world.config, 'svc-security');
    const progress = () => world.owner.selectFrom('key_rotations').select(['rewrapped_keys', 'total_keys', 'stage']).where('id', '=', rotationId).executeTakeFirst();
    await vi.waitFor(async () => expect((await progress())?.rewrapped_keys ?? 0).toBeGreaterThanOrEqual(300), { timeout: 120_000, interval: 50 });
    worker!.child.kill('SIGKILL');
    await worker!.exited;
    const atKill = (await progress())!;
    expect(atKill.rewrapped_keys).toBeLessThan(atKill.total_keys);

    worker = await startWorker();
    const result = (await client.workflow.getHandle(rotationId).result()) as RotationProgress;
    expect(result.stage).toBe('completed');

    // Each key counted once: the resumed attempt did not start again from the first key.
    expect(await progress()).toMatchObject({ rewrapped_keys: 2000, total_keys: 2000 });
    const newKeyOf = new Map(result.targets.map((t) => [t.region, t.newKeyId]));
    const rows = await world.owner.selectFrom('data_keys').select(['region', 'kms_key_id', 'rotation_id']).where('status', '=', 'active').execute();
    expect(rows).toHaveLength(2000);
    for (const row of rows) expect(row).toMatchObject({ kms_key_id: newKeyOf.get(row.region), rotation_id: rotationId });
    // A key wrapped twice would unwrap to a wrap, not to the key: every one unwraps to the key it was.
    expect(await world.fingerprints()).toEqual(before);
    expect(await world.decryptable()).toBe(2000);
  }, 300_000);
});
