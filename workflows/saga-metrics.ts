import {
  ApplicationFailure,
  CancelledFailure,
  ContinueAsNew,
  proxySinks,
  TimeoutFailure,
  workflowInfo,
  type Sinks,
  type WorkflowInterceptorsFactory,
} from '@temporalio/workflow';

/**
 * What a workflow tells the worker's metrics (src/worker/saga-metrics.ts) about its saga.
 * Sinks are calls out of the sandbox that leave no command and no event in the history, and
 * the worker registers them not to run during replay: counting changes nothing a workflow
 * does, and a replayed workflow (after a cache eviction or on another worker) is not
 * counted again.
 */
export interface SagaMetricsSinks extends Sinks {
  sagaMetrics: {
    started(): void;
    completed(): void;
    /** It ran compensations; `reason` is the failure type that made it undo. */
    compensated(reason: string): void;
    failed(reason: string): void;
  };
}

const { sagaMetrics } = proxySinks<SagaMetricsSinks>();

/** The failure type of workflows/saga.ts when a compensation kept failing. */
const COMPENSATION_FAILED = 'CompensationFailed';

/** The failure type behind `err`: an ApplicationFailure's `type` anywhere in its cause chain, else its kind. */
function reasonOf(err: unknown): string {
  let current: unknown = err;
  for (let depth = 0; depth < 8 && current instanceof Error; depth++) {
    if (current instanceof ApplicationFailure && current.type) return current.type;
    if (current instanceof CancelledFailure) return 'Cancelled';
    if (current instanceof TimeoutFailure) return 'Timeout';
    current = current.cause;
  }
  return err instanceof Error ? err.name : 'unknown';
}

/** Audited compensations: subscription and registration sagas audit `saga.compensation`, rotation its discards and demotions. */
function isCompensationAudit(activityType: string, args: readonly unknown[]): boolean {
  if (activityType !== 'recordAudit') return false;
  const entry = args[0] as { action?: unknown; details?: { step?: unknown } } | undefined;
  if (entry?.action === 'saga.compensation') return true;
  const step = entry?.details?.step;
  return entry?.action === 'key.rotation' && typeof step === 'string' && (step.startsWith('discarded:') || step.startsWith('demoted:'));
}

export const interceptors: WorkflowInterceptorsFactory = () => {
  let compensating = false;
  const watch = (activityType: string, args: readonly unknown[]) => {
    if (isCompensationAudit(activityType, args)) compensating = true;
  };
  return {
    inbound: [
      {
        async execute(input, next) {
          const info = workflowInfo();
          // A run continued from one of its own kind is the same saga going on.
          if (info.continuedFromExecutionRunId === undefined) sagaMetrics.started();
          try {
            const result = await next(input);
            if (compensating) sagaMetrics.compensated('Compensated');
            else sagaMetrics.completed();
            return result;
          } catch (err) {
            if (err instanceof ContinueAsNew) {
              // Into another workflow type (the subscription saga becoming its entity): this saga is done.
              if (err.command.workflowType && err.command.workflowType !== info.workflowType) sagaMetrics.completed();
            } else {
              const reason = reasonOf(err);
              // An undo that failed is a failure whatever else was undone: something may be left behind.
              if (compensating && reason !== COMPENSATION_FAILED) sagaMetrics.compensated(reason);
              else sagaMetrics.failed(reason);
            }
            throw err;
          }
        },
      },
    ],
    outbound: [
      {
        async scheduleActivity(input, next) {
          watch(input.activityType, input.args);
          return next(input);
        },
        async scheduleLocalActivity(input, next) {
          watch(input.activityType, input.args);
          return next(input);
        },
      },
    ],
  };
};
