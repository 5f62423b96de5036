import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import type { RotationProgress } from '../../workflows/key-rotation-contracts';
import { rotationWorld, type RotationWorld } from '../support/rotation-stack';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { tokenFor } from '../support/tokens';

/**
 * An emergency rotation (PCI DSS v4.0 3.7.5, a key suspected compromised) while a routine
 * one waits out a week-long grace period: refused only until that one has promoted, then
 * run at once. The routine rotation's grace ends (its old keys retired now), and the key the
 * emergency replaces, the suspect one, stays decrypt-only only for DATA_KEY_CACHE_MAX_AGE_SECONDS.
 * Real activities, local KMS and PostgreSQL, in a world of its own.
 */
describe('emergency key rotation', () => {
  let world: RotationWorld;
  let client: Client;
  let api: RunningServer & { services: Services };
  let workers: Awaited<ReturnType<typeof createTestWorkers>>;
  let release: () => void;
  let running: Promise<unknown>;
  let token: string;

  beforeAll(async () => {
    world = await rotationWorld('emergency', 200, { KEY_ROTATION_GRACE_SECONDS: String(7 * 86_400), DATA_KEY_CACHE_MAX_AGE_SECONDS: '1' });
    client = await connectClient(world.config, world.services.dataConverter);
    workers = await createTestWorkers(world.config);
    running = runWorkersUntil(workers.workers, new Promise<void>((resolve) => (release = resolve)));
    api = await startTestApi(world.config);
    token = await tokenFor(world.config, 'svc-security', ['keys:rotate']);
  }, 300_000);
  afterAll(async () => {
    await api?.stop();
    release?.();
    await running;
    await workers?.close();
    await client?.connection.close();
    await world?.close();
  });

  const rotate = (body?: unknown) =>
    fetch(`${api.url}/v1/key-rotations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const progressOf = (rotationId: string) => client.workflow.getHandle(rotationId).query<RotationProgress>('rotationProgress');

  it('refuses a reason it does not know, naming the field', async () => {
    const res = await rotate({ reason: 'bored' });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await res.json()) as { errors: { field: string }[] }).errors.map((e) => e.field)).toEqual(['body.reason']);
    const extra = await rotate({ reason: 'suspected compromise', keys: ['alias/x'] });
    expect(extra.status).toBe(400);
  });

  it('runs at once during a grace period, ends that grace, and retires the suspect key after the cache lifetime only', async () => {
    const fingerprints = await world.fingerprints();
    // Hold the routine rotation before it promotes: its first new key waits for this lock on key_versions.
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    const hold = world.owner.transaction().execute(async (tx) => {
      await sql`lock table key_versions in exclusive mode`.execute(tx);
      locked();
      await held;
    });
    await isLocked;
    const routine = await rotate();
    expect(routine.status).toBe(202);
    const { rotationId: first } = (await routine.json()) as { rotationId: string };

    // Before the routine rotation has promoted, even an emergency waits its turn: two re-wraps never interleave.
    // (The API answers from the rotation's row, written by its first step; until then the workflow refuses itself.)
    try {
      await vi.waitFor(async () => expect(await world.owner.selectFrom('key_rotations').select('status').where('id', '=', first).executeTakeFirst()).toEqual({ status: 'running' }), { timeout: 30_000 });
      const early = await rotate({ reason: 'suspected compromise' });
      expect(early.status).toBe(409);
      expect(await early.json()).toMatchObject({ runningRotationId: first });
    } finally {
      letGo();
      await hold;
    }

    await vi.waitFor(async () => expect((await progressOf(first)).stage).toBe('grace'), { timeout: 120_000, interval: 200 });
    const promoted = await progressOf(first);
    // A week to go: the routine rotation's old keys (generation 0) still decrypt; its new ones (generation 1) are suspect now.
    for (const target of promoted.targets) expect(await world.keyState(target.previousKeyId!)).toBe('Enabled');

    const emergency = await rotate({ reason: 'suspected compromise' });
    expect(emergency.status).toBe(202);
    const body = (await emergency.json()) as { rotationId: string; reason: string };
    expect(body.reason).toBe('suspected compromise');
    const second = body.rotationId;

    // The routine rotation's grace ends now, not in a week: its old region keys retire.
    const firstResult = (await client.workflow.getHandle(first).result()) as RotationProgress;
    expect(firstResult).toMatchObject({ stage: 'completed', graceEndedBy: second });
    for (const target of firstResult.targets) {
      expect([target.alias, target.retirement]).toEqual([target.alias, target.region === null ? 'kept' : 'retired']);
      expect(await world.keyState(target.previousKeyId!)).toBe(target.region === null ? 'Enabled' : 'PendingDeletion');
    }

    // The emergency replaces generation 1 with generation 2, and retires the suspect region keys after one second of grace.
    const secondResult = (await client.workflow.getHandle(second).result()) as RotationProgress;
    expect(secondResult).toMatchObject({ stage: 'completed', reason: 'suspected compromise', graceEndedBy: null });
    for (const target of secondResult.targets) {
      const generation1 = firstResult.targets.find((t) => t.alias === target.alias)!.newKeyId;
      expect(target.previousKeyId).toBe(generation1);
      expect(await world.aliasTarget(target.alias)).toBe(target.newKeyId);
      expect(await world.keyState(generation1!)).toBe(target.region === null ? 'Enabled' : 'PendingDeletion');
    }

    // Every data key is still the same key, now wrapped by generation 2 only.
    expect(await world.fingerprints()).toEqual(fingerprints);
    expect(await world.decryptable()).toBe(200);
    const regionKeys = new Set(secondResult.targets.filter((t) => t.region !== null).map((t) => t.newKeyId));
    const wraps = await world.owner.selectFrom('data_keys').select('kms_key_id').distinct().where('status', '=', 'active').execute();
    expect(new Set(wraps.map((w) => w.kms_key_id))).toEqual(regionKeys);

    // Audited: why it ran out of turn, whose grace it ended, and that the grace ended early.
    const audit = await world.owner.selectFrom('audit_log').select(['subject_id', 'details']).where('action', '=', 'key.rotation').where('subject_id', 'in', [first, second]).orderBy('seq').execute();
    const step = (rotationId: string, name: string) => audit.find((a) => a.subject_id === rotationId && (a.details as { step?: string }).step === name)?.details;
    expect(step(second, 'started')).toMatchObject({ reason: 'suspected compromise', endsGraceOf: first, graceSeconds: 1 });
    expect(step(first, 'grace-ended')).toMatchObject({ byRotationId: second });
    expect(step(first, 'started')).not.toHaveProperty('reason');
  }, 300_000);
});
