import { proxySinks, type Sinks, type WorkflowInterceptorsFactory } from '@temporalio/workflow';

/**
 * The dunning-parked benchmark's workflow interceptor (bundled by the benchmark's own
 * worker, never by production's): tells the worker, through a sink, each time a workflow
 * starts a timer, so the benchmark knows when every campaign is parked on its retry
 * timer. It changes nothing the workflow does: the timer is started as before.
 */
export interface ParkedTimerSinks extends Sinks {
  parkedTimers: {
    started(durationMs: number): void;
  };
}

const { parkedTimers } = proxySinks<ParkedTimerSinks>();

export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      async startTimer(input, next) {
        parkedTimers.started(input.durationMs);
        return next(input);
      },
    },
  ],
});
