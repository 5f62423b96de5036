import { randomUUID } from 'node:crypto';
import { ScheduleOverlapPolicy, WorkflowNotFoundError, type Client, type ScheduleOptionsAction } from '@temporalio/client';
import { ensureSchedule } from '../temporal/schedules';
import { unpromotedRotation } from './key-rotation-dal';
import type { Config } from '../config/config';
import type { Db } from '../db/database';
import type { Logger } from '../log';
import { KEY_ROTATION_SCHEDULE_ID, rotationProgressQuery, type KeyRotationInput, type RotationProgress, type RotationReason } from '../../workflows/key-rotation-contracts';
import type { keyRotationWorkflow } from '../../workflows/key-rotation';

/** Starting, scheduling and reading key rotations: shared by the API, the CLI and start-up. */

export class RotationAlreadyRunningError extends Error {
  override name = 'RotationAlreadyRunningError';
  constructor(readonly runningId: string) {
    super(`key rotation ${runningId} is running; one at a time`);
  }
}

export interface RotationStatus {
  readonly rotationId: string;
  readonly status: 'running' | 'completed' | 'failed';
  readonly stage: string;
  readonly requestedBy: string;
  readonly totalKeys: number;
  readonly rewrappedKeys: number;
  readonly verifiedKeys: number;
  readonly failure: string | null;
  readonly startedAt: string;
  readonly finishedAt: string | null;
  /** The workflow's own view while it runs: per master key, and when the old keys retire. */
  readonly progress: RotationProgress | null;
}

function action(config: Pick<Config, 'temporal'>, input: KeyRotationInput): ScheduleOptionsAction {
  return {
    type: 'startWorkflow',
    workflowType: 'keyRotationWorkflow' satisfies (typeof keyRotationWorkflow)['name'],
    workflowId: KEY_ROTATION_SCHEDULE_ID,
    taskQueue: config.temporal.taskQueue,
    args: [input],
  };
}

/**
 * Creates the `key-rotation` schedule, or brings an existing one in line with the
 * configuration: every KEY_ROTATION_INTERVAL_DAYS, overlap policy skip. Safe to run on
 * every start, from any number of processes (see {@link ensureSchedule}).
 */
export async function ensureKeyRotationSchedule(client: Pick<Client, 'schedule'>, config: Pick<Config, 'temporal' | 'keyRotation'>, log: Pick<Logger, 'info' | 'warn'>): Promise<'created' | 'updated'> {
  const outcome = await ensureSchedule(client, log, KEY_ROTATION_SCHEDULE_ID, {
    spec: { intervals: [{ every: `${config.keyRotation.intervalDays}d` }] },
    action: action(config, { requestedBy: `schedule:${KEY_ROTATION_SCHEDULE_ID}` }),
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 day' },
  });
  if (outcome === 'created') log.info({ everyDays: config.keyRotation.intervalDays }, 'key rotation schedule created');
  return outcome;
}

/**
 * Starts a rotation now, unless one is running that has not promoted its keys yet. One that
 * only waits out its grace period does not stand in the way: the new rotation ends that grace.
 * `reason` makes it an emergency (see {@link RotationReason}). Returns its id (the workflow id).
 */
export async function startKeyRotation(client: Pick<Client, 'workflow'>, db: Db, config: Pick<Config, 'temporal'>, requestedBy: string, reason?: RotationReason): Promise<string> {
  const running = await unpromotedRotation(db);
  if (running) throw new RotationAlreadyRunningError(running.id);
  const rotationId = `key-rotation:${randomUUID()}`;
  const input: KeyRotationInput = reason ? { requestedBy, reason } : { requestedBy };
  await client.workflow.start('keyRotationWorkflow', { taskQueue: config.temporal.taskQueue, workflowId: rotationId, args: [input] });
  return rotationId;
}

/** A rotation's status from PostgreSQL, with the workflow's own progress while it runs. Undefined when unknown. */
export async function rotationStatus(client: Pick<Client, 'workflow'>, db: Db, rotationId: string): Promise<RotationStatus | undefined> {
  const row = await db.selectFrom('key_rotations').selectAll().where('id', '=', rotationId).executeTakeFirst();
  let progress: RotationProgress | null = null;
  try {
    progress = await client.workflow.getHandle(rotationId).query(rotationProgressQuery);
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError) && row === undefined) throw err;
  }
  if (!row) {
    // Started, but its first step has not recorded it yet.
    if (!progress) return undefined;
    return { rotationId, status: 'running', stage: progress.stage, requestedBy: '', totalKeys: 0, rewrappedKeys: 0, verifiedKeys: 0, failure: null, startedAt: '', finishedAt: null, progress };
  }
  return {
    rotationId,
    status: row.status,
    stage: row.stage,
    requestedBy: row.requested_by,
    totalKeys: row.total_keys,
    rewrappedKeys: row.rewrapped_keys,
    verifiedKeys: row.verified_keys,
    failure: row.failure,
    startedAt: row.started_at.toISOString(),
    finishedAt: row.finished_at?.toISOString() ?? null,
    progress,
  };
}
