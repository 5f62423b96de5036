import { WorkflowExecutionAlreadyStartedError, WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ApplicationFailure, CancelledFailure, TerminatedFailure, TimeoutFailure } from '@temporalio/common';
import { erasureWorkflowId } from '../../workflows/customer-contracts';
import type { eraseCustomerWorkflow } from '../../workflows/customers';


export type ErasureStatus = 'erasing' | 'erased' | 'erasure_failed';

export interface ErasureState {
  readonly status: ErasureStatus;
  /** Why it failed, as a code (a failure type, `terminated`, `timed_out`, `canceled`); never a message. */
  readonly reason?: string;
}

/**
 * Starts the customer's erasure, or leaves the one under way alone. A failed, terminated,
 * timed-out or cancelled erasure is started afresh under the same workflow id
 * (ALLOW_DUPLICATE_FAILED_ONLY): the steps are idempotent, so a rerun finishes what the
 * last one left. A completed erasure is never run again.
 */
export async function requestErasure(
  temporal: Pick<Client, 'workflow'>,
  taskQueue: string,
  input: Parameters<typeof eraseCustomerWorkflow>[0],
): Promise<{ workflowId: string; started: boolean }> {
  const workflowId = erasureWorkflowId(input.customerId);
  try {
    await temporal.workflow.start<typeof eraseCustomerWorkflow>('eraseCustomerWorkflow', {
      taskQueue,
      workflowId,
      workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
      args: [input],
    });
    return { workflowId, started: true };
  } catch (err) {
    // Running (a concurrent DELETE, or the first one still at work) or completed: same erasure.
    if (err instanceof WorkflowExecutionAlreadyStartedError) return { workflowId, started: false };
    throw err;
  }
}

/** The latest erasure of the customer as its workflow tells it; undefined when none was asked for. */
export async function erasureState(temporal: Pick<Client, 'workflow'>, customerId: string): Promise<ErasureState | undefined> {
  const handle = temporal.workflow.getHandle(erasureWorkflowId(customerId));
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
  if (status === 'RUNNING' || status === 'CONTINUED_AS_NEW') return { status: 'erasing' };
  if (status === 'COMPLETED') return { status: 'erased' };
  return { status: 'erasure_failed', reason: await failureCode(handle) };
}

async function failureCode(handle: { result(): Promise<unknown> }): Promise<string> {
  try {
    await handle.result();
    return 'unknown';
  } catch (err) {
    const cause = err instanceof WorkflowFailedError ? err.cause : err;
    if (cause instanceof TerminatedFailure) return 'terminated';
    if (cause instanceof TimeoutFailure) return 'timed_out';
    if (cause instanceof CancelledFailure) return 'canceled';
    // An activity's failure arrives wrapped: the type the failure mapping gave it is the code.
    for (let c: unknown = cause, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
      if (c instanceof ApplicationFailure && c.type) return c.type;
    }
    return 'unknown';
  }
}
