import { proxyActivities } from '@temporalio/workflow';
import { LOCAL_STEP, stripeStep } from '../../workflows/activity-options';
import type { NoopActivities } from './noop-activities';

/**
 * The subscription-saga benchmark's baseline (bundled by the benchmark's own worker, never
 * by production's): the same number of activities as one saga, run one after another in
 * the same order across the same two queues (the workflow's own task queue and its
 * `-stripe` twin), with the same activity options, each doing nothing.
 */
export type Lane = 'general' | 'stripe';

export interface BareSagaInput {
  /** One entry per activity, in the order the saga schedules them. */
  readonly lanes: readonly Lane[];
}

export async function bareSagaWorkflow(input: BareSagaInput): Promise<number> {
  const general = proxyActivities<NoopActivities>(LOCAL_STEP);
  const second = proxyActivities<NoopActivities>(stripeStep());
  for (const lane of input.lanes) {
    if (lane === 'stripe') await second.noopOnSecondQueue();
    else await general.noop();
  }
  return input.lanes.length;
}
