import { proxyActivities } from '@temporalio/workflow';
import type { createCanaryActivities } from '../activities/canary';

/**
 * A round trip through every moving part an operator cares about: client → Temporal →
 * workflow worker → activity → back. `ledgerlock` and the benchmarks use it to prove a
 * deployment end to end without touching billing data.
 */
export interface CanaryInput {
  readonly nonce: string;
}

export interface CanaryResult {
  readonly nonce: string;
  /** Identity of the worker that ran the activity. */
  readonly answeredBy: string;
}

const { canaryEcho } = proxyActivities<ReturnType<typeof createCanaryActivities>>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 3 },
});

export async function canaryWorkflow(input: CanaryInput): Promise<CanaryResult> {
  return canaryEcho(input);
}
