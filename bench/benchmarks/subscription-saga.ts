import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { WorkflowContinuedAsNewError, type Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { tsToMs } from '@temporalio/common/lib/time';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import { loadConfig, type Config } from '../../src/config/config';
import { createLogger } from '../../src/log';
import { startApi } from '../../src/runtime';
import { createServices } from '../../src/services';
import { connectClient, connectWorker } from '../../src/temporal/connection';
import { bundleWorkflows, createWorkers, quietBundlerLogger, runWorkersUntil } from '../../src/worker/worker';
import { STRIPE_QUEUE_SUFFIX } from '../../workflows/activity-options';
import { subscriptionStateQuery, type SubscriptionView } from '../../workflows/subscription-contracts';
import { envFor, startTestServers } from '../../test/support/servers';
import { tokenFor } from '../../test/support/tokens';
import { runConcurrently, type BenchResult } from '../lib';
import { createNoopActivities } from '../workflows/noop-activities';
import type { BareSagaInput, Lane } from '../workflows/noop';

const SAGAS = 40;
const CONCURRENCY = 8;
/** Measured rounds of each contender, alternated (bare, saga, bare, saga, ...); each keeps its best. */
const ROUNDS = 2;
const WARM_UP = 8;
/** Stripe's production cap (default 20/s) is Temporal's own limiter, measured elsewhere: lifted here. */
const STRIPE_CAP = 1000;
/** A saga that is not active by then is stuck (waiting for a payment outcome nobody sends): fail loudly. */
const ACTIVE_TIMEOUT_MS = 60_000;

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

interface Round {
  readonly seconds: number;
  readonly latenciesMs: number[];
  readonly workflowIds: string[];
  /** Saga rounds only: POST → 202 of each saga. */
  readonly postMs: number[];
}

/**
 * N subscription sagas through the real API (POST /v1/subscriptions, in-process) and the
 * real workers against stripe-mock, timed from POST to active, against a bare workflow
 * that runs the same number of no-op activities across the same two task queues, started
 * through the same client with the same (KMS-backed) data converter on the same dev server,
 * with the same N and concurrency.
 */
export async function subscriptionSagaBenchmark(): Promise<BenchResult> {
  const { stack, stop } = await startTestServers('bench-saga');
  const runTag = randomUUID().slice(0, 8);
  const config = loadConfig(
    envFor(stack, {
      TEMPORAL_TASK_QUEUE: `bench-saga-${runTag}`,
      STRIPE_MAX_ACTIVITIES_PER_SECOND: String(STRIPE_CAP),
      LOG_LEVEL: 'error',
    }),
  );
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const rig = await startSagaRig(config, runTag);
    closers.push(() => rig.close());
    const { client, workers: sagaWorkers, runSagas, checkActive } = rig;
    const workerServices = rig.workerServices;

    // The baseline's own workers and bundle: its workflow is not a production workflow.
    const bareQueue = `bench-bare-${runTag}`;
    const bareConnection = await connectWorker(config);
    closers.push(() => bareConnection.close());
    const bareBundle = await bundleWorkflowCode({ workflowsPath: path.resolve(__dirname, '../workflows/noop.ts'), logger: quietBundlerLogger });
    const bareCommon = {
      connection: bareConnection,
      namespace: config.temporal.namespace,
      identity: 'bench-bare-worker',
      dataConverter: workerServices.dataConverter,
      activities: createNoopActivities(),
    };
    const bareWorkers = [
      await Worker.create({ ...bareCommon, taskQueue: bareQueue, workflowBundle: bareBundle }),
      await Worker.create({ ...bareCommon, taskQueue: `${bareQueue}${STRIPE_QUEUE_SUFFIX}`, maxTaskQueueActivitiesPerSecond: STRIPE_CAP }),
    ];

    let bareCounter = 0;

    const runBare = async (total: number, input: BareSagaInput): Promise<Round> => {
      const latenciesMs: number[] = [];
      const workflowIds: string[] = [];
      const seconds = await runConcurrently(total, CONCURRENCY, async () => {
        const workflowId = `bench-bare-${runTag}-${bareCounter++}`;
        const started = performance.now();
        await client.workflow.execute('bareSagaWorkflow', { taskQueue: bareQueue, workflowId, args: [input] });
        latenciesMs.push(performance.now() - started);
        workflowIds.push(workflowId);
      });
      return { seconds, latenciesMs, postMs: [], workflowIds };
    };

    return await runWorkersUntil([...sagaWorkers, ...bareWorkers], async () => {
      // Warm up (JIT, KMS keys, pools, workflow caches), then read one saga's history to
      // learn how many activities it runs and on which queue.
      const warm = await checkActive(await runSagas(WARM_UP));
      const lanes = lanesOf(await firstRunHistory(client, warm.workflowIds[0]!));
      const bareInput: BareSagaInput = { lanes };
      await runBare(WARM_UP, bareInput);

      let bestSaga: Round | undefined;
      let bestBare: Round | undefined;
      const sagaCpu: Record<string, number> = {};
      const bareCpu: Record<string, number> = {};
      const measuredCpu = async (into: Record<string, number>, run: () => Promise<Round>): Promise<Round> => {
        const before = cpuSeconds();
        const result = await run();
        for (const [name, seconds] of Object.entries(cpuSeconds())) into[name] = (into[name] ?? 0) + seconds - (before[name] ?? 0);
        return result;
      };
      for (let round = 0; round < ROUNDS; round++) {
        const bare = await measuredCpu(bareCpu, () => runBare(SAGAS, bareInput));
        const saga = await checkActive(await measuredCpu(sagaCpu, () => runSagas(SAGAS)));
        process.stdout.write(
          `  round ${round + 1}: bare ${(SAGAS / bare.seconds).toFixed(1)}/s (p50 ${percentile(bare.latenciesMs, 0.5).toFixed(0)} ms), ` +
            `saga ${(SAGAS / saga.seconds).toFixed(1)}/s (p50 ${percentile(saga.latenciesMs, 0.5).toFixed(0)} ms)\n`,
        );
        if (!bestBare || bare.seconds < bestBare.seconds) bestBare = bare;
        if (!bestSaga || saga.seconds < bestSaga.seconds) bestSaga = saga;
      }

      // Where a saga's time goes, from the histories of the best round (outside the clock).
      const sagaHistories = await Promise.all(bestSaga!.workflowIds.map((id) => firstRunHistory(client, id)));
      const bareHistories = await Promise.all(bestBare!.workflowIds.map((id) => firstRunHistory(client, id)));
      for (const history of sagaHistories) {
        const count = lanesOf(history).length;
        if (count !== lanes.length) throw new Error(`a saga ran ${count} activities, the first one ${lanes.length}`);
      }
      const sagaBreakdown = breakdown(sagaHistories);
      const bareBreakdown = breakdown(bareHistories);

      const sagasPerSecond = SAGAS / bestSaga!.seconds;
      const barePerSecond = SAGAS / bestBare!.seconds;
      const ratio = sagasPerSecond / barePerSecond;
      const onSecondQueue = lanes.filter((l) => l === 'stripe').length;
      const cpuMsPerRun = (cpu: Record<string, number>) =>
        Object.entries(cpu)
          .filter(([, seconds]) => (seconds * 1000) / (SAGAS * ROUNDS) >= 0.5)
          .sort((a, b) => b[1] - a[1])
          .map(([name, seconds]) => `${name} ${((seconds * 1000) / (SAGAS * ROUNDS)).toFixed(0)}`)
          .join(', ');
      const totalCpuMs = (cpu: Record<string, number>) => round1((Object.values(cpu).reduce((a, b) => a + b, 0) * 1000) / (SAGAS * ROUNDS));
      const slowest = Object.entries(sagaBreakdown.perActivityMs)
        .sort((a, b) => b[1] - a[1])
        .map(([name, ms]) => `${name} ${ms.toFixed(1)}`)
        .join(', ');
      return {
        name: 'subscription-saga',
        description:
          `${SAGAS} subscription sagas, ${CONCURRENCY} in flight, POST /v1/subscriptions (real API and workers in-process) → active ` +
          `(creation run continued-as-new into subscriptionWorkflow, then checked by query), against stripe-mock, whose first payment ` +
          `settles at once (no paymentOutcome signal needed); Stripe queue cap raised to ${STRIPE_CAP}/s so that the production cap ` +
          `(Temporal's own limiter, default 20/s) does not set the pace. Baseline: a bare workflow running the same ${lanes.length} ` +
          `no-op activities in the same order (${onSecondQueue} on a second, -stripe queue), same dev server, client, data converter, N ` +
          `and concurrency. Best of ${ROUNDS} alternated rounds each, after ${WARM_UP} warm-up runs of each. Details: where a run's ` +
          `time goes (from the histories of the best rounds) and its CPU cost by process (over all rounds).`,
        measured: { label: 'sagas POST → active', value: sagasPerSecond, unit: '/s' },
        baseline: { label: `bare workflows of ${lanes.length} no-op activities`, value: barePerSecond, unit: '/s' },
        ratio,
        ratioMeaning: 'of bare-workflow throughput (higher is better)',
        target: { description: 'ratio ≥ 0.7', met: ratio >= 0.7 },
        details: {
          sagas: SAGAS,
          concurrency: CONCURRENCY,
          activitiesPerSaga: lanes.length,
          activitiesOnStripeQueue: onSecondQueue,
          sagaP50Ms: round1(percentile(bestSaga!.latenciesMs, 0.5)),
          sagaP99Ms: round1(percentile(bestSaga!.latenciesMs, 0.99)),
          bareP50Ms: round1(percentile(bestBare!.latenciesMs, 0.5)),
          bareP99Ms: round1(percentile(bestBare!.latenciesMs, 0.99)),
          sagaPostTo202MeanMs: round1(mean(bestSaga!.postMs)),
          sagaRunMeanMs: round1(sagaBreakdown.runMs),
          sagaActivityExecutionMeanMs: round1(sagaBreakdown.executionMs),
          sagaActivityQueueWaitMeanMs: round1(sagaBreakdown.queueWaitMs),
          sagaBetweenActivitiesMeanMs: round1(sagaBreakdown.runMs - sagaBreakdown.executionMs - sagaBreakdown.queueWaitMs),
          bareRunMeanMs: round1(bareBreakdown.runMs),
          bareActivityExecutionMeanMs: round1(bareBreakdown.executionMs),
          bareActivityQueueWaitMeanMs: round1(bareBreakdown.queueWaitMs),
          bareBetweenActivitiesMeanMs: round1(bareBreakdown.runMs - bareBreakdown.executionMs - bareBreakdown.queueWaitMs),
          sagaWorkflowTasks: round1(sagaBreakdown.workflowTasks),
          sagaSearchAttributeUpserts: round1(sagaBreakdown.searchAttributeUpserts),
          sagaHistoryEvents: round1(sagaBreakdown.events),
          bareWorkflowTasks: round1(bareBreakdown.workflowTasks),
          bareHistoryEvents: round1(bareBreakdown.events),
          sagaActivityExecutionMeanMsByType: slowest,
          sagaCpuMsPerRun: totalCpuMs(sagaCpu),
          bareCpuMsPerRun: totalCpuMs(bareCpu),
          sagaCpuMsPerRunByProcess: cpuMsPerRun(sagaCpu),
          bareCpuMsPerRunByProcess: cpuMsPerRun(bareCpu),
        },
      };
    });
  } finally {
    for (const close of closers.reverse()) await close().catch((err) => console.error('teardown:', err));
    await stop();
  }
}

/**
 * The real API and the real workers in this process, with services of their own (what
 * test/support/runtime.ts's startTestApi and createTestWorkers do; that module imports
 * vitest, so it cannot load here), against the Temporal `config` names; `runSagas` creates
 * subscriptions through POST /v1/subscriptions and waits until each is active.
 */
export async function startSagaRig(config: Config, runTag: string) {
  const quiet = createLogger('error');
  const closers: (() => Promise<unknown>)[] = [];
  try {
    const apiServices = createServices(config, quiet);
    closers.push(() => apiServices.close());
    const api = await startApi(config, quiet, apiServices);
    closers.push(() => api.stop());
    const workerServices = createServices(config, quiet);
    closers.push(() => workerServices.close());
    const workerConnection = await connectWorker(config);
    closers.push(() => workerConnection.close());
    const sagaWorkers = await createWorkers({
      config,
      workflowBundle: await bundleWorkflows(config),
      connection: workerConnection,
      dataConverter: workerServices.dataConverter,
      deps: { identity: 'bench-saga-worker', ...workerServices, config },
    });
    const client = await connectClient(config, apiServices.dataConverter);
    closers.push(() => client.connection.close());
    const token = await tokenFor(config, 'bench-saga', ['subscriptions:write', 'subscriptions:read']);
    let sagaCounter = 0;

    const runSagas = async (total: number): Promise<Round> => {
      const latenciesMs: number[] = [];
      const postMs: number[] = [];
      const workflowIds: string[] = [];
      const seconds = await runConcurrently(total, CONCURRENCY, async () => {
        const i = sagaCounter++;
        const started = performance.now();
        const res = await fetch(`${api.url}/v1/subscriptions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': `bench-${runTag}-${i}` },
          body: JSON.stringify({
            customer: { email: `bench-${i}@example.com`, name: `Bench Customer ${i}`, country: 'DE' },
            priceId: 'price_bench',
            paymentMethodId: 'pm_card_visa',
          }),
        });
        if (res.status !== 202) throw new Error(`POST /v1/subscriptions answered ${res.status}: ${await res.text()}`);
        const { workflowId } = (await res.json()) as { workflowId: string };
        postMs.push(performance.now() - started);
        await untilActive(client, workflowId);
        latenciesMs.push(performance.now() - started);
        workflowIds.push(workflowId);
      });
      return { seconds, latenciesMs, postMs, workflowIds };
    };
    /** Outside the clock (and the CPU count): every saga of a round answers active, as GET /v1/subscriptions/:id would. */
    const checkActive = async (round: Round): Promise<Round> => {
      for (const workflowId of round.workflowIds) {
        const view: SubscriptionView = await client.workflow.getHandle(workflowId).query(subscriptionStateQuery);
        if (view.status !== 'active') throw new Error(`${workflowId} is ${view.status} after its saga`);
      }
      return round;
    };

    return {
      client,
      workers: sagaWorkers,
      workerServices,
      runSagas,
      checkActive,
      async close() {
        for (const close of closers.reverse()) await close().catch((err) => console.error('teardown:', err));
      },
    };
  } catch (err) {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    throw err;
  }
}

export type SagaRound = Round;

/**
 * Resolves once the creation saga of `workflowId` has activated the subscription: its run
 * continued-as-new into `subscriptionWorkflow` (the last thing it does after mark-active).
 * Waits on the run's close with a long poll rather than polling the state.
 */
async function untilActive(client: Client, workflowId: string): Promise<void> {
  const current = await client.workflow.getHandle(workflowId).describe();
  if (current.type !== 'createSubscriptionWorkflow') return; // already the subscription's own workflow
  const run = client.workflow.getHandle(workflowId, current.runId, { followRuns: false });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(async () => {
      const view = await run.query(subscriptionStateQuery).catch(() => undefined);
      reject(new Error(`${workflowId} not active after ${ACTIVE_TIMEOUT_MS} ms: ${JSON.stringify(view ?? 'no state')}`));
    }, ACTIVE_TIMEOUT_MS);
  });
  try {
    await Promise.race([run.result(), timeout]);
    throw new Error(`${workflowId}: the creation run ended without continuing as new`);
  } catch (err) {
    if (!(err instanceof WorkflowContinuedAsNewError)) throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The events of a workflow id's first run (the creation saga; the bare workflow's only run). */
async function firstRunHistory(client: Client, workflowId: string): Promise<HistoryEvent[]> {
  const description = await client.workflow.getHandle(workflowId).describe();
  const firstRunId = description.raw.workflowExecutionInfo?.firstRunId || description.runId;
  const history = await client.workflow.getHandle(workflowId, firstRunId).fetchHistory();
  return history.events ?? [];
}

function lanesOf(events: readonly HistoryEvent[]): Lane[] {
  return events
    .filter((e) => e.activityTaskScheduledEventAttributes)
    .map((e) => (e.activityTaskScheduledEventAttributes!.taskQueue?.name?.endsWith(STRIPE_QUEUE_SUFFIX) ? 'stripe' : 'general'));
}

interface Breakdown {
  /** Mean of a run's start → close. */
  readonly runMs: number;
  /** Mean per run of the activities' started → completed, summed. */
  readonly executionMs: number;
  /** Mean per run of the activities' scheduled → started, summed. */
  readonly queueWaitMs: number;
  /** Mean started → completed of each activity type, per activity. */
  readonly perActivityMs: Record<string, number>;
  /** Mean per run: workflow tasks completed, search-attribute upserts, history events. */
  readonly workflowTasks: number;
  readonly searchAttributeUpserts: number;
  readonly events: number;
}

function breakdown(histories: readonly (readonly HistoryEvent[])[]): Breakdown {
  let run = 0;
  let execution = 0;
  let queueWait = 0;
  let workflowTasks = 0;
  let upserts = 0;
  let eventCount = 0;
  const perType: Record<string, number[]> = {};
  for (const events of histories) {
    const at = (e: HistoryEvent) => tsToMs(e.eventTime);
    const byId = new Map(events.map((e) => [Number(e.eventId), e]));
    run += at(events[events.length - 1]!) - at(events[0]!);
    workflowTasks += events.filter((e) => e.workflowTaskCompletedEventAttributes).length;
    upserts += events.filter((e) => e.upsertWorkflowSearchAttributesEventAttributes).length;
    eventCount += events.length;
    for (const completed of events.filter((e) => e.activityTaskCompletedEventAttributes)) {
      const attrs = completed.activityTaskCompletedEventAttributes!;
      const scheduled = byId.get(Number(attrs.scheduledEventId))!;
      const started = byId.get(Number(attrs.startedEventId))!;
      const name = scheduled.activityTaskScheduledEventAttributes!.activityType?.name ?? '?';
      execution += at(completed) - at(started);
      queueWait += at(started) - at(scheduled);
      (perType[name] ??= []).push(at(completed) - at(started));
    }
  }
  const n = Math.max(histories.length, 1);
  return {
    runMs: run / n,
    executionMs: execution / n,
    queueWaitMs: queueWait / n,
    perActivityMs: Object.fromEntries(Object.entries(perType).map(([name, values]) => [name, mean(values)])),
    workflowTasks: workflowTasks / n,
    searchAttributeUpserts: upserts / n,
    events: eventCount / n,
  };
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/**
 * CPU seconds used so far, by component: this process (API, workers, their Temporal core
 * threads, the benchmark's client), each server it started (Temporal dev server,
 * stripe-mock, the KMS), and PostgreSQL (every backend on the machine: it is not ours to
 * start). Linux only (/proc); elsewhere only this process.
 */
function cpuSeconds(): Record<string, number> {
  const usage = process.cpuUsage();
  const totals: Record<string, number> = { 'bench process (API, workers, client)': (usage.user + usage.system) / 1e6 };
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return totals;
  }
  const procs = new Map<number, { ppid: number; ticks: number; comm: string; cmdline: string }>();
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
      procs.set(Number(entry), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]), comm, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  const ours = (pid: number): boolean => {
    for (let p = procs.get(pid)?.ppid, hops = 0; p && hops < 20; p = procs.get(p)?.ppid, hops++) if (p === process.pid) return true;
    return false;
  };
  for (const [pid, proc] of procs) {
    let name: string | undefined;
    if (proc.comm.startsWith('postgres')) name = 'postgres (all backends)';
    else if (ours(pid)) name = /kms/.test(proc.cmdline) ? 'kms' : /temporal/.test(proc.comm) ? 'temporal dev server' : proc.comm;
    if (name) totals[name] = (totals[name] ?? 0) + proc.ticks / CLOCK_TICKS;
  }
  return totals;
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

function round1(value: number): number {
  return Math.round(value * 10) / 10;
}
