import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { createAuditActivities } from '../activities/audit';
import type { createKeyRotationActivities } from '../activities/key-rotation';
import type { AuditDetails } from '../src/audit/audit-types';
import { LOCAL_RETRY, LOCAL_STEP } from './activity-options';
import {
  endGraceSignal,
  GRACE_PERIOD_STAGE,
  KEY_ROTATION_FAILURE,
  ROTATION_PATCHES,
  ROTATION_REASONS,
  rotationProgressQuery,
  type KeyRotationInput,
  type RotationPlan,
  type RotationProgress,
  type RotationStage,
  type RotationTarget,
  type RotationTargetProgress,
} from './key-rotation-contracts';
import { Saga } from './saga';

type Activities = ReturnType<typeof createKeyRotationActivities> & ReturnType<typeof createAuditActivities>;

const local = proxyActivities<Activities>(LOCAL_STEP);
/** Batch loops over every data key: long, so they heartbeat their cursor; a dead worker is noticed in seconds. */
const batches = proxyActivities<Activities>({
  startToCloseTimeout: '6 hours',
  heartbeatTimeout: '10 seconds',
  retry: LOCAL_RETRY,
});

/**
 * Rotates every master key, as PCI DSS 3.7 asks at the end of a cryptoperiod: for each
 * region's key and the payload codec's key, a new KMS key (compensation: disabled and
 * scheduled for deletion); every data key re-wrapped to it with KMS ReEncrypt in
 * heartbeating batches that resume where they stopped (the old wrap kept meanwhile); every
 * re-wrap verified against its fingerprint; then promotion (alias and active version in
 * one step, the old key decrypt-only; compensation: both back); and, after a durable grace
 * period, retirement of the old keys unless something still references them. No data row
 * is re-encrypted: the cost grows with the number of data keys, not with the data.
 *
 * One rotation at a time until it promotes: a second one fails at once with
 * KeyRotationAlreadyRunning. Once promoted, a rotation only waits out its grace period, and
 * the next one may start: it ends that grace (`endGrace`), so the keys two rotations old are
 * retired at once. An emergency rotation (`reason: 'suspected compromise'`) keeps the key it
 * replaces decrypt-only only for DATA_KEY_CACHE_MAX_AGE_SECONDS (the plan's grace).
 * Every step is audited with key ids, never key material.
 */
export async function keyRotationWorkflow(input: KeyRotationInput): Promise<RotationProgress> {
  if (typeof input !== 'object' || input === null || typeof input.requestedBy !== 'string' || input.requestedBy === '' || input.requestedBy.length > 200) {
    throw ApplicationFailure.create({ type: KEY_ROTATION_FAILURE.invalidInput, nonRetryable: true, message: 'requestedBy must be a service identity' });
  }
  if (input.reason !== undefined && !(ROTATION_REASONS as readonly unknown[]).includes(input.reason)) {
    throw ApplicationFailure.create({ type: KEY_ROTATION_FAILURE.invalidInput, nonRetryable: true, message: `reason must be one of: ${ROTATION_REASONS.join(', ')}` });
  }
  const reason = input.reason ?? null;
  const rotationId = workflowInfo().workflowId;
  let stage: RotationStage = 'planning';
  let retireAt: number | null = null;
  let failure: string | null = null;
  let graceEndedBy: string | null = null;
  const progress = new Map<string, RotationTargetProgress>();
  const update = (alias: string, change: Partial<RotationTargetProgress>) => progress.set(alias, { ...progress.get(alias)!, ...change });
  const view = (): RotationProgress => ({ rotationId, stage, targets: [...progress.values()], retireAt, failure, reason, graceEndedBy });
  setHandler(rotationProgressQuery, view);
  setHandler(endGraceSignal, ({ byRotationId }) => {
    // The next rotation may start as soon as promotion is recorded, a moment before this workflow
    // enters its grace period: a request that early ends the grace as it begins. Once retiring, it changes nothing.
    const over = stage === 'retiring' || stage === 'completed';
    if (!over && graceEndedBy === null && typeof byRotationId === 'string' && byRotationId !== rotationId) graceEndedBy = byRotationId;
  });

  const audit = (step: string, details: AuditDetails) =>
    local.recordAudit({
      idempotencyKey: `${rotationId}:key.rotation:${step}`,
      actor: input.requestedBy,
      action: 'key.rotation',
      subjectType: 'key-rotation',
      subjectId: rotationId,
      details: { step, ...details },
    });

  // Before emergencies, beginRotation answered nothing and the plan took no input.
  const begun = await local.beginRotation({ rotationId, requestedBy: input.requestedBy });
  const graceToEnd = patched(ROTATION_PATCHES.endsEarlierGrace) ? (begun?.graceToEnd ?? []) : [];
  const plan: RotationPlan = await local.planRotation(reason ? { emergency: true } : {});
  for (const target of plan.targets) {
    progress.set(target.alias, { alias: target.alias, region: target.region, newKeyId: null, previousKeyId: null, rewrapped: 0, verified: 0, promoted: false, retirement: 'pending' });
  }
  await audit('started', {
    targets: plan.targets.map((t) => t.alias).join(','),
    graceSeconds: plan.graceSeconds,
    ...(reason ? { reason } : {}),
    ...(graceToEnd.length ? { endsGraceOf: graceToEnd.join(',') } : {}),
  });
  // The keys those rotations replaced are about to be two generations old: retire them now.
  for (const earlier of graceToEnd) {
    try {
      await getExternalWorkflowHandle(earlier).signal(endGraceSignal, { byRotationId: rotationId });
    } catch {
      // It has finished meanwhile: its grace is over anyway.
    }
  }

  const saga = new Saga();
  const keys = new Map<string, { newKeyId: string; previousKeyId: string }>();
  const regions = plan.targets.filter((t): t is RotationTarget & { region: string } => t.region !== null);
  try {
    stage = 'creating';
    for (const target of plan.targets) {
      saga.onRollback(`discard-${target.alias}`, async () => {
        const { discardedKeyId } = await local.discardNewMasterKey({ rotationId, target });
        await audit(`discarded:${target.alias}`, { alias: target.alias, kmsKeyId: discardedKeyId });
      });
      const created = await local.createMasterKey({ rotationId, target });
      keys.set(target.alias, created);
      update(target.alias, { newKeyId: created.newKeyId, previousKeyId: created.previousKeyId });
      await audit(`created:${target.alias}`, { alias: target.alias, kmsKeyId: created.newKeyId, previousKmsKeyId: created.previousKeyId });
    }

    stage = 'rewrapping';
    for (const target of regions) {
      const { newKeyId } = keys.get(target.alias)!;
      const { rewrapped } = await batches.rewrapDataKeys({ rotationId, region: target.region, newKeyId, batchSize: plan.batchSize });
      update(target.alias, { rewrapped });
      await audit(`rewrapped:${target.alias}`, { alias: target.alias, kmsKeyId: newKeyId, dataKeys: rewrapped });
    }

    stage = 'verifying';
    for (const target of regions) {
      const { newKeyId } = keys.get(target.alias)!;
      // Keys created while the re-wrap ran are re-wrapped now; then every one must check out.
      const late = await batches.rewrapDataKeys({ rotationId, region: target.region, newKeyId, batchSize: plan.batchSize });
      const { verified } = await batches.verifyRewrappedKeys({ rotationId, region: target.region, newKeyId, batchSize: plan.batchSize });
      update(target.alias, { rewrapped: progress.get(target.alias)!.rewrapped + late.rewrapped, verified });
      await audit(`verified:${target.alias}`, { alias: target.alias, kmsKeyId: newKeyId, dataKeys: verified });
    }

    stage = 'promoting';
    for (const target of plan.targets) {
      const { newKeyId, previousKeyId } = keys.get(target.alias)!;
      saga.onRollback(`demote-${target.alias}`, async () => {
        const { restored } = await local.demoteMasterKey({ rotationId, target, previousKeyId });
        update(target.alias, { promoted: false });
        await audit(`demoted:${target.alias}`, { alias: target.alias, kmsKeyId: previousKeyId, dataKeys: restored });
      });
      const { promoted } = await local.promoteMasterKey({ rotationId, target, newKeyId, previousKeyId });
      update(target.alias, { promoted: true });
      await audit(`promoted:${target.alias}`, { alias: target.alias, kmsKeyId: newKeyId, previousKmsKeyId: previousKeyId, dataKeys: promoted });
    }
  } catch (err) {
    failure = describe(err);
    stage = 'compensating';
    await CancellationScope.nonCancellable(async () => {
      await saga.compensate();
      stage = 'failed';
      await local.finishRotation({ rotationId, status: 'failed', failure: failure ?? 'unknown' });
      await audit('failed', { reason: failure });
    });
    throw err;
  }

  // Old keys stay decrypt-only for the grace period: payloads and caches written under them stay readable.
  // Recorded first: once the query says `grace`, the database says promoted and the next rotation may start.
  await local.setRotationStage({ rotationId, stage: GRACE_PERIOD_STAGE });
  stage = 'grace';
  retireAt = Date.now() + plan.graceSeconds * 1000;
  if (patched(ROTATION_PATCHES.graceEndsEarly)) {
    // Ended early by the next rotation's start, or run to its end.
    if (plan.graceSeconds > 0) await condition(() => graceEndedBy !== null, plan.graceSeconds * 1000);
    if (graceEndedBy !== null) await audit('grace-ended', { byRotationId: graceEndedBy });
  } else if (plan.graceSeconds > 0) {
    await sleep(plan.graceSeconds * 1000);
  }

  stage = 'retiring';
  for (const target of plan.targets) {
    const { previousKeyId } = keys.get(target.alias)!;
    const { retired, references } = await local.retireOldMasterKey({ rotationId, target, previousKeyId });
    update(target.alias, { retirement: retired ? 'retired' : 'kept' });
    await audit(`${retired ? 'retired' : 'kept'}:${target.alias}`, { alias: target.alias, kmsKeyId: previousKeyId, references });
  }
  stage = 'completed';
  retireAt = null;
  await local.finishRotation({ rotationId, status: 'completed' });
  await audit('completed', {});
  return view();
}

function describe(err: unknown): string {
  const cause = err instanceof ActivityFailure && err.cause ? err.cause : err;
  if (cause instanceof ApplicationFailure) return `${cause.type ?? 'ApplicationFailure'}: ${cause.message}`.slice(0, 300);
  return cause instanceof Error ? cause.message.slice(0, 300) : 'unexpected error';
}
