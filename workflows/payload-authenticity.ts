import { log, type WorkflowInboundCallsInterceptor, type WorkflowInterceptorsFactory, type WorkflowOutboundCallsInterceptor } from '@temporalio/workflow';
import { isRefused, payloadRefused } from './payload-refusal';

/**
 * The workflow interceptors that refuse what our payload codec did not encrypt (see
 * payload-refusal.ts), registered on every worker and bundled into every workflow bundle
 * (src/worker/worker.ts):
 *
 * - a workflow input: the workflow fails with a non-retryable `PayloadRefused` before its
 *   code runs, so no activity is scheduled;
 * - an update: rejected (by the validator step, before it is accepted into the history);
 * - a query: answered with the failure;
 * - a signal: dropped, and logged. Failing the workflow instead would let anyone who can
 *   reach the Temporal frontend end any subscription with one plaintext signal. A signal
 *   with no payload at all is dropped too: every signal of ours carries one, so a bare one
 *   cannot have come through our codec;
 * - an activity's result: the activity call fails with `PayloadRefused`.
 *
 * The codec has already counted and logged each refused payload (src/temporal/payload-codec.ts).
 */
const inbound: WorkflowInboundCallsInterceptor = {
  async execute(input, next) {
    if (input.args.some(isRefused)) throw payloadRefused('workflow input');
    return next(input);
  },
  async handleSignal(input, next) {
    if (input.args.length === 0 || input.args.some(isRefused)) {
      log.warn('signal refused: not encrypted by our payload codec', { signal: input.signalName });
      return;
    }
    return next(input);
  },
  validateUpdate(input, next) {
    if (input.args.some(isRefused)) throw payloadRefused(`update ${input.name}`);
    next(input);
  },
  async handleUpdate(input, next) {
    if (input.args.some(isRefused)) throw payloadRefused(`update ${input.name}`);
    return next(input);
  },
  async handleQuery(input, next) {
    if (input.args.some(isRefused)) throw payloadRefused(`query ${input.queryName}`);
    return next(input);
  },
};

const outbound: WorkflowOutboundCallsInterceptor = {
  async scheduleActivity(input, next) {
    const result = await next(input);
    if (isRefused(result)) throw payloadRefused(`result of activity ${input.activityType}`);
    return result;
  },
  async scheduleLocalActivity(input, next) {
    const result = await next(input);
    if (isRefused(result)) throw payloadRefused(`result of local activity ${input.activityType}`);
    return result;
  },
};

export const interceptors: WorkflowInterceptorsFactory = () => ({ inbound: [inbound], outbound: [outbound] });
