import { defineQuery, defineSignal } from '@temporalio/workflow';

/** The key-rotation saga's contract. Persisted in histories: append only, never rename. */

export interface RotationTarget {
  readonly alias: string;
  readonly purpose: 'region' | 'codec';
  /** The region whose data keys the master key wraps; null for the payload codec's key. */
  readonly region: string | null;
}

export interface RotationPlan {
  readonly targets: readonly RotationTarget[];
  /** How long the old master keys stay decrypt-only before they are retired. */
  readonly graceSeconds: number;
  readonly batchSize: number;
}

/**
 * Why a rotation runs out of turn. `suspected compromise` (PCI DSS v4.0 3.7.5) is an
 * emergency: it may start while another rotation waits out its grace period, and the key
 * it replaces stays decrypt-only only for DATA_KEY_CACHE_MAX_AGE_SECONDS.
 */
export const ROTATION_REASONS = ['suspected compromise'] as const;
export type RotationReason = (typeof ROTATION_REASONS)[number];

export interface KeyRotationInput {
  /** Service identity or operator that asked (audit actor); the schedule says `schedule:key-rotation`. */
  readonly requestedBy: string;
  /** Absent for a routine rotation. */
  readonly reason?: RotationReason;
}

/** The database's stage of a rotation that promoted its keys and waits out its grace period. */
export const GRACE_PERIOD_STAGE = 'grace period';

export type RotationStage = 'planning' | 'creating' | 'rewrapping' | 'verifying' | 'promoting' | 'grace' | 'retiring' | 'completed' | 'compensating' | 'failed';

export interface RotationTargetProgress {
  readonly alias: string;
  readonly region: string | null;
  readonly newKeyId: string | null;
  readonly previousKeyId: string | null;
  readonly rewrapped: number;
  readonly verified: number;
  readonly promoted: boolean;
  /** After the grace period: retired, or kept because something still references it (data keys; for the codec key, workflow histories). */
  readonly retirement: 'pending' | 'retired' | 'kept';
}

export interface RotationProgress {
  readonly rotationId: string;
  readonly stage: RotationStage;
  readonly targets: readonly RotationTargetProgress[];
  /** Unix ms when the old keys are due for retirement, during the grace period. */
  readonly retireAt: number | null;
  readonly failure: string | null;
  /** Why it ran out of turn; null (or absent, before emergencies existed) for a routine rotation. */
  readonly reason?: RotationReason | null;
  /** The rotation whose start ended this one's grace period early, if one did. */
  readonly graceEndedBy?: string | null;
}

export const KEY_ROTATION_FAILURE = {
  alreadyRunning: 'KeyRotationAlreadyRunning',
  alreadyFinished: 'KeyRotationAlreadyFinished',
  verificationFailed: 'KeyRotationVerificationFailed',
  invalidInput: 'InvalidKeyRotationInput',
} as const;

/** The schedule that starts a rotation every interval (90 days by default). */
export const KEY_ROTATION_SCHEDULE_ID = 'key-rotation';

export const rotationProgressQuery = defineQuery<RotationProgress>('rotationProgress');

/**
 * Sent by a rotation that starts while this one waits out its grace period: the old keys
 * are retired now (if nothing references them), since they are about to be two keys old.
 */
export const endGraceSignal = defineSignal<[{ readonly byRotationId: string }]>('endGrace');

/** Patches of the rotation workflow (histories recorded before them replay without). */
export const ROTATION_PATCHES = {
  /** A starting rotation ends the grace periods of the promoted rotations still running. */
  endsEarlierGrace: 'rotation-ends-earlier-grace',
  /** The grace period waits on a timer or on `endGrace`, whichever comes first. */
  graceEndsEarly: 'rotation-grace-ends-early',
} as const;
