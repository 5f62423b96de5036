import { defineQuery } from '@temporalio/workflow';

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

export interface KeyRotationInput {
  /** Service identity or operator that asked (audit actor); the schedule says `schedule:key-rotation`. */
  readonly requestedBy: string;
}

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
