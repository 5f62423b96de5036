import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { DefaultLogger, Runtime, Worker, type InjectedSinks } from '@temporalio/worker';
import type { Activities, StripeActivities } from '../../activities';
import { loadConfig } from '../../src/config/config';
import { createLogger } from '../../src/log';
import { createServices } from '../../src/services';
import { connectWorker } from '../../src/temporal/connection';
import { sagaMetricsSinks } from '../../src/worker/saga-metrics';
import { runWorkersUntil, stripeTaskQueue, tracingSinks, WORKFLOW_BUNDLE_OPTIONS, WORKFLOWS_PATH } from '../../src/worker/worker';
import { DEFAULT_DUNNING_POLICY, type DunningPolicy } from '../../workflows/dunning-contracts';
import type { ParkedTimerSinks } from '../workflows/parked-timers';

/**
 * The worker of the `dunning-parked` benchmark, in a child process of its own (forked by
 * dunning-parked.ts) so that its resident memory is the worker's alone: no client, no
 * servers, no benchmark bookkeeping beyond two sets of workflow ids.
 *
 * The same two workers as production's createWorkers (general queue with the production
 * workflow bundle, built in this process from workflows/index.ts as `ledgerlock worker`
 * does; Stripe queue with its rate cap; the application's KMS-backed data converter from
 * createServices), except for two things: the activities are in-memory fakes, and the
 * bundle carries one interceptor (bench/workflows/parked-timers.ts) that reports each
 * started timer through a sink. The Temporal runtime logs at WARN: the campaigns run
 * without a parent subscription workflow, and each logs (INFO) the progress signal that
 * found nobody, twice.
 *
 * Protocol: the parent sends `start` (config environment), `load` (the campaigns are
 * about to start: reset the peak), `stop`; the child answers `running`, then `sample`
 * every 500 ms, `noticesQueued` and `parked` once, `stopped` last.
 */

export type ParentMessage =
  | {
      readonly type: 'start';
      readonly env: Record<string, string>;
      /** Campaigns the parent will start; `parked` is sent when that many have started their long timer. */
      readonly expected: number;
      /** A timer at least this long is the parked retry timer. */
      readonly parkedTimerMinMs: number;
      /** Unset: the SDK's default (what production runs with). */
      readonly maxCachedWorkflows?: number;
    }
  | { readonly type: 'load' }
  | { readonly type: 'stop' };

export interface WorkerSample {
  /** Unix ms, this machine's clock. */
  readonly at: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** CPU time this process used so far (all threads: JS, the Temporal core's, V8's). */
  readonly cpuSeconds: number;
  /** Highest RSS seen by the 100 ms sampler since `load`. */
  readonly maxRssSinceLoad: number;
  readonly noticesQueued: number;
  readonly parked: number;
  readonly cachedWorkflows: number;
  readonly inFlightActivations: number;
  readonly activityCalls: Record<string, number>;
}

export type ChildMessage =
  | { readonly type: 'running'; readonly maxCachedWorkflows: number; readonly heapLimitMiB: number; readonly createSeconds: number }
  | ({ readonly type: 'sample' } & WorkerSample)
  | { readonly type: 'loadStarted'; readonly peakResetByKernel: boolean }
  | { readonly type: 'noticesQueued'; readonly at: number }
  | { readonly type: 'parked'; readonly at: number; readonly lastParked: readonly string[] }
  | { readonly type: 'stopped'; readonly kernelPeakRssSinceLoad: number | null }
  | { readonly type: 'error'; readonly error: string };

/** Every campaign pins this: its first retry a day away, so it parks on that timer after its first notice. */
export const PARKED_POLICY: DunningPolicy = {
  ...DEFAULT_DUNNING_POLICY,
  name: 'bench-parked',
  retryOffsetsSeconds: [86_400],
  gracePeriodSeconds: 7 * 86_400,
};

type GeneralFakes = Pick<Activities, 'resolveDunningPolicy' | 'queueDunningNotice' | 'suspendEntitlements' | 'restoreEntitlements' | 'recordAudit'>;
type StripeFakes = Pick<StripeActivities, 'retryInvoicePayment' | 'cancelStripeSubscription' | 'confirmInvoicePayment'>;

function send(message: ChildMessage, then?: () => void): void {
  process.send!(message, undefined, undefined, () => then?.());
}

/** The kernel's peak RSS of this process (VmHWM), in bytes; null off Linux. */
function kernelPeakRss(): number | null {
  try {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

async function main(start: Extract<ParentMessage, { type: 'start' }>): Promise<void> {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const config = loadConfig(start.env);
  const services = createServices(config, createLogger('error'));
  const connection = await connectWorker(config);

  const calls: Record<string, number> = {};
  const noticed = new Set<string>();
  const parked = new Set<string>();
  const lastParked: string[] = [];
  let noticesSent = false;
  let parkedSent = false;
  const count = (name: string) => void (calls[name] = (calls[name] ?? 0) + 1);

  let sequence = 0;
  const general: GeneralFakes = {
    async resolveDunningPolicy() {
      count('resolveDunningPolicy');
      return PARKED_POLICY;
    },
    async queueDunningNotice(input) {
      count('queueDunningNotice');
      noticed.add(input.dunningId);
      if (!noticesSent && noticed.size >= start.expected) {
        noticesSent = true;
        send({ type: 'noticesQueued', at: Date.now() });
      }
      return { id: `${input.dunningId}:notice-${input.attempt}`, status: 'sent' };
    },
    async suspendEntitlements() {
      count('suspendEntitlements');
      return { revoked: 1, alreadySuspended: false };
    },
    async restoreEntitlements() {
      count('restoreEntitlements');
      return { restored: true };
    },
    async recordAudit() {
      count('recordAudit');
      return { seq: String(++sequence), hash: '0'.repeat(64) };
    },
  };
  const stripe: StripeFakes = {
    // Each campaign first asks Stripe whether its invoice is an unpaid one of the subscription.
    async confirmInvoicePayment(input) {
      count('confirmInvoicePayment');
      return { invoiceId: input.invoiceId, status: 'failed', amountPaid: null, currency: null, paidAt: null, declineCode: null };
    },
    async retryInvoicePayment() {
      count('retryInvoicePayment');
      return { outcome: 'declined', declineCode: 'insufficient_funds' };
    },
    async cancelStripeSubscription() {
      count('cancelStripeSubscription');
      return { outcome: 'canceled', voidedInvoiceId: null };
    },
  };
  const sinks: InjectedSinks<ParkedTimerSinks> = {
    parkedTimers: {
      started: {
        fn(info, durationMs) {
          if (durationMs < start.parkedTimerMinMs) return;
          parked.add(info.workflowId);
          lastParked.push(info.workflowId);
          if (lastParked.length > 5) lastParked.shift();
          if (!parkedSent && parked.size >= start.expected) {
            parkedSent = true;
            send({ type: 'parked', at: Date.now(), lastParked: [...lastParked] });
          }
        },
        callDuringReplay: false,
      },
    },
  };

  const created = performance.now();
  const common = {
    connection,
    namespace: config.temporal.namespace,
    identity: `bench-dunning-worker-${process.pid}`,
    dataConverter: services.dataConverter,
  };
  const generalWorker = await Worker.create({
    ...common,
    taskQueue: config.temporal.taskQueue,
    workflowsPath: WORKFLOWS_PATH,
    activities: general,
    // The production bundle's interceptors (tracing included, as every worker runs them), plus the parked-timer probe.
    interceptors: { workflowModules: [...WORKFLOW_BUNDLE_OPTIONS.workflowInterceptorModules, path.resolve(__dirname, '../workflows/parked-timers.ts')] },
    sinks: { ...tracingSinks(), ...sagaMetricsSinks, ...sinks },
    ...(start.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: start.maxCachedWorkflows } : {}),
  });
  const stripeWorker = await Worker.create({
    ...common,
    taskQueue: stripeTaskQueue(config),
    activities: stripe,
    maxTaskQueueActivitiesPerSecond: config.stripe.maxActivitiesPerSecond,
  });
  const createSeconds = (performance.now() - created) / 1000;

  let maxRssSinceLoad = 0;
  const sampler = setInterval(() => {
    maxRssSinceLoad = Math.max(maxRssSinceLoad, process.memoryUsage.rss());
  }, 100);
  const reporter = setInterval(() => {
    const memory = process.memoryUsage();
    const cpu = process.cpuUsage();
    const status = generalWorker.getStatus();
    maxRssSinceLoad = Math.max(maxRssSinceLoad, memory.rss);
    send({
      type: 'sample',
      at: Date.now(),
      rss: memory.rss,
      heapUsed: memory.heapUsed,
      heapTotal: memory.heapTotal,
      external: memory.external,
      arrayBuffers: memory.arrayBuffers,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      maxRssSinceLoad,
      noticesQueued: noticed.size,
      parked: parked.size,
      cachedWorkflows: status.numCachedWorkflows,
      inFlightActivations: status.numInFlightWorkflowActivations,
      activityCalls: { ...calls },
    });
  }, 500);

  let release!: () => void;
  const stopped = new Promise<void>((resolve) => (release = resolve));
  process.on('message', (message: ParentMessage) => {
    if (message.type === 'load') {
      let peakResetByKernel = false;
      try {
        // "5" resets the peak RSS (VmHWM) of this process: from now on it is the load's.
        writeFileSync('/proc/self/clear_refs', '5');
        peakResetByKernel = true;
      } catch {
        // not Linux, or not allowed: the sampler's maximum stands alone
      }
      maxRssSinceLoad = process.memoryUsage.rss();
      send({ type: 'loadStarted', peakResetByKernel });
    } else if (message.type === 'stop') {
      release();
    }
  });
  const running = runWorkersUntil([generalWorker, stripeWorker], stopped);
  send({
    type: 'running',
    maxCachedWorkflows: generalWorker.options.maxCachedWorkflows,
    heapLimitMiB: Math.round(v8.getHeapStatistics().heap_size_limit / 2 ** 20),
    createSeconds,
  });
  await running;
  clearInterval(sampler);
  clearInterval(reporter);
  const kernelPeakRssSinceLoad = kernelPeakRss();
  await connection.close();
  await services.close();
  send({ type: 'stopped', kernelPeakRssSinceLoad }, () => process.exit(0));
}

process.once('message', (message: ParentMessage) => {
  if (message.type !== 'start') return;
  main(message).catch((err: unknown) => {
    send({ type: 'error', error: (err as Error).stack ?? String(err) }, () => process.exit(1));
  });
});
// The parent gone (its IPC channel closed): nothing left to report to.
process.on('disconnect', () => process.exit(0));
