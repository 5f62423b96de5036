import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import { boundedLabel, SAGA_OF_WORKFLOW, sagaCompensated, sagaCompleted, sagaFailed, sagaStarted, sagaStepDuration } from '../metrics/metrics';
import type { SagaMetricsSinks } from '../../workflows/saga-metrics';

/**
 * The worker's side of workflows/saga-metrics.ts: saga starts and endings counted by saga
 * (the workflow type, mapped to a fixed name; other workflows are not counted) and reason
 * (a failure type, bounded). Never called while a workflow replays.
 */
export const sagaMetricsSinks: InjectedSinks<SagaMetricsSinks> = {
  sagaMetrics: {
    started: {
      fn: (info) => {
        const saga = SAGA_OF_WORKFLOW[info.workflowType];
        if (saga) sagaStarted.inc({ saga });
      },
      callDuringReplay: false,
    },
    completed: {
      fn: (info) => {
        const saga = SAGA_OF_WORKFLOW[info.workflowType];
        if (saga) sagaCompleted.inc({ saga });
      },
      callDuringReplay: false,
    },
    compensated: {
      fn: (info, reason) => {
        const saga = SAGA_OF_WORKFLOW[info.workflowType];
        if (saga) sagaCompensated.inc({ saga, reason: boundedLabel(reason) });
      },
      callDuringReplay: false,
    },
    failed: {
      fn: (info, reason) => {
        const saga = SAGA_OF_WORKFLOW[info.workflowType];
        if (saga) sagaFailed.inc({ saga, reason: boundedLabel(reason) });
      },
      callDuringReplay: false,
    },
  },
};

/** Times every attempt of a saga's steps (its activities, local ones included), by saga, step and outcome. */
export const sagaStepTimer: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const saga = SAGA_OF_WORKFLOW[ctx.info.workflowType ?? ''];
      if (!saga) return next(input);
      const end = sagaStepDuration.startTimer({ saga, step: boundedLabel(ctx.info.activityType) });
      try {
        const result = await next(input);
        end({ outcome: 'ok' });
        return result;
      } catch (err) {
        end({ outcome: 'failed' });
        throw err;
      }
    },
  },
});
