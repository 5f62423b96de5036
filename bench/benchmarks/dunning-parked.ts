import { fork, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { pathToFileURL } from 'node:url';
import type { Client } from '@temporalio/client';
import { loadConfig } from '../../src/config/config';
import { createLogger } from '../../src/log';
import { createDb } from '../../src/db/database';
import { createServices } from '../../src/services';
import { startTemporalServer, type TemporalServer } from '../../src/stack/temporal-server';
import { connectClient } from '../../src/temporal/connection';
import { dunningStateQuery, dunningWorkflowId, type DunningInput } from '../../workflows/dunning-contracts';
import { envFor, startTestServers } from '../../test/support/servers';
import { median, runConcurrently, type BenchResult } from '../lib';
import type { ChildMessage, ParentMessage, WorkerSample } from './dunning-parked-worker';

/** Campaigns started (dev server, full server); BENCH_DUNNING_WORKFLOWS overrides it for a quick look, never for a reported figure. */
const DEFAULT_WORKFLOWS = { dev: 10_000, full: 100_000 } as const;
/** Starts in flight from the client. */
const CONCURRENCY = 100;
/** Each health window (idle before the load, then with every campaign parked). */
const WINDOW_SECONDS = 10;
/** Unset: the SDK's default, as production runs (it depends on the worker's heap limit). */
/** The production worker's setting (WORKER_MAX_CACHED_WORKFLOWS), unless BENCH_DUNNING_MAX_CACHED says otherwise. */
const MAX_CACHED_WORKFLOWS: number | undefined = Number(process.env.BENCH_DUNNING_MAX_CACHED ?? loadConfig({}).temporal.maxCachedWorkflows);
/**
 * No further campaign parked for this long: the rest are stuck; fail loudly. No limit on the
 * whole: on a small machine the dev server parks only a few campaigns a second (see README).
 */
const PARK_STALL_MS = 120_000;
/** The parked retry timer is a day; nothing else in the campaign waits an hour. */
const PARKED_TIMER_MIN_MS = 3_600_000;
const TARGET_BYTES = 2 ** 30;
const MiB = 2 ** 20;
const COUNT_QUERY = 'WorkflowType="dunningWorkflow"';

interface HealthWindow {
  readonly from: number;
  readonly to: number;
  readonly describeMs: number[];
  readonly countMs: number[];
  readonly serverRss: number[];
  /** CPU the Temporal server used during the window, in seconds. */
  readonly serverCpuSeconds: number | null;
}

/**
 * 10,000 dunning campaigns (workflows/dunning.ts, the production bundle) started directly
 * from a client and left parked on their first retry timer, a day away: the time to start
 * them and to get every one parked, the worker's resident memory (in a child process of
 * its own, against its own idle RSS), and the Temporal server's health while they wait
 * (the dev server, or with `temporal: 'full'` 100,000 of them on the full server on PostgreSQL)
 * (DescribeNamespace and visibility count latency, against the same calls before the load).
 */
export async function dunningParkedBenchmark(temporal: 'dev' | 'full' = 'dev'): Promise<BenchResult> {
  const WORKFLOWS = Number(process.env.BENCH_DUNNING_WORKFLOWS ?? DEFAULT_WORKFLOWS[temporal]);
  const serverName = temporal === 'full' ? 'full Temporal server v1.29.1 on PostgreSQL' : 'Temporal dev server (SQLite)';
  const { stack, stop } = await startTestServers('bench-dunning');
  const runTag = randomUUID().slice(0, 8);
  const closers: (() => Promise<unknown>)[] = [];
  let full: TemporalServer | undefined;
  if (temporal === 'full') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-bench-dunning-full-'));
    closers.push(async () => rmSync(dir, { recursive: true, force: true }));
    full = await startTemporalServer({ databaseUrl: stack.databaseUrl, suffix: `bench_dunning_${process.pid}_${runTag}`, namespace: 'default', toolsDir: stack.toolsDir, dir });
    const server = full;
    closers.push(() => server.destroy());
  }
  const env = envFor(stack, { TEMPORAL_TASK_QUEUE: `bench-dunning-${runTag}`, LOG_LEVEL: 'error', ...(full ? { TEMPORAL_ADDRESS: full.address } : {}) });
  const config = loadConfig(env);
  const services = createServices(config, createLogger('error'));
  closers.push(() => services.close());
  try {
    const client = await connectClient(config, services.dataConverter);
    closers.push(() => client.connection.close());
    const serverPid = full ? full.process.pid : devServerPid(stack.temporalAddress);
    const serverRss: { at: number; rss: number }[] = [];
    const serverSampler = setInterval(() => {
      const rss = serverPid ? processRss(serverPid) : null;
      if (rss !== null) serverRss.push({ at: Date.now(), rss });
    }, 500);
    closers.push(async () => clearInterval(serverSampler));

    const worker = await startWorkerProcess();
    closers.push(() => worker.stop());
    const running = await worker.start({ type: 'start', env, expected: WORKFLOWS, parkedTimerMinMs: PARKED_TIMER_MIN_MS, ...(MAX_CACHED_WORKFLOWS !== undefined ? { maxCachedWorkflows: MAX_CACHED_WORKFLOWS } : {}) });
    process.stdout.write(`  worker up in ${running.createSeconds.toFixed(1)} s (bundle included), maxCachedWorkflows ${running.maxCachedWorkflows}\n`);

    const health = async (): Promise<HealthWindow> => {
      const from = Date.now();
      const cpuBefore = serverPid ? processCpuSeconds(serverPid) : null;
      const deadline = performance.now() + WINDOW_SECONDS * 1000;
      const describeMs: number[] = [];
      const countMs: number[] = [];
      const loop = async (into: number[], call: () => Promise<unknown>) => {
        while (performance.now() < deadline) {
          const started = performance.now();
          await call();
          into.push(performance.now() - started);
        }
      };
      await Promise.all([
        loop(describeMs, () => client.workflowService.describeNamespace({ namespace: config.temporal.namespace })),
        loop(countMs, () => client.workflow.count(COUNT_QUERY)),
      ]);
      const to = Date.now();
      const cpuAfter = serverPid ? processCpuSeconds(serverPid) : null;
      return {
        from,
        to,
        describeMs,
        countMs,
        serverRss: serverRss.filter((s) => s.at >= from && s.at <= to).map((s) => s.rss),
        serverCpuSeconds: cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null,
      };
    };

    // Baseline: the worker polling, idle; the Temporal server with nothing running.
    await sleep(2_000);
    const idle = await health();
    const idleWorker = worker.samplesBetween(idle.from, idle.to);

    // The load: every campaign started, then parked.
    await worker.load();
    const loadStarted = Date.now();
    const workerCpuAtLoad = worker.latest().cpuSeconds;
    const progress = setInterval(() => {
      const s = worker.latest();
      process.stdout.write(`  ${((Date.now() - loadStarted) / 1000).toFixed(0)} s: notices ${s.noticesQueued}, parked ${s.parked}, cached ${s.cachedWorkflows}, worker RSS ${(s.rss / MiB).toFixed(0)} MiB\n`);
    }, 15_000);
    let startSeconds: number;
    let parked: { at: number; lastParked: readonly string[] };
    const workflowIds: string[] = [];
    try {
      const failedAt = Math.floor(Date.now() / 1000);
      startSeconds = await runConcurrently(WORKFLOWS, CONCURRENCY, async (i) => {
        const input: DunningInput = {
          subscriptionId: `sub_ll_${randomBytes(12).toString('hex')}`,
          customerId: `cust_bench_${runTag}_${i}`,
          priceId: 'price_bench_monthly',
          invoiceId: `in_bench_${runTag}_${i}`,
          failedAt,
          declineCode: 'insufficient_funds',
        };
        const workflowId = dunningWorkflowId(input.subscriptionId, input.invoiceId);
        await client.workflow.start('dunningWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
        workflowIds[i] = workflowId;
      });
      process.stdout.write(`  ${WORKFLOWS} started in ${startSeconds.toFixed(1)} s\n`);
      parked = await worker.parked(PARK_STALL_MS);
    } finally {
      clearInterval(progress);
    }
    const parkedSeconds = (parked.at - loadStarted) / 1000;
    const noticesSeconds = worker.noticesQueuedAt ? (worker.noticesQueuedAt - loadStarted) / 1000 : null;
    process.stdout.write(`  all ${WORKFLOWS} parked ${parkedSeconds.toFixed(1)} s after the first start\n`);
    const workerCpuLoad = worker.latest().cpuSeconds - workerCpuAtLoad;

    // What the server's visibility says (it is eventually consistent: polled).
    const visibilityDeadline = Date.now() + 30_000;
    let attemptOne = 0;
    while ((attemptOne = await countOf(client, `${COUNT_QUERY} AND ExecutionStatus="Running" AND DunningAttempt = 1`)) < WORKFLOWS && Date.now() < visibilityDeadline) await sleep(250);
    const visibleAt = Date.now();
    const runningCount = await countOf(client, `${COUNT_QUERY} AND ExecutionStatus="Running"`);
    const totalCount = await countOf(client, COUNT_QUERY);
    if (runningCount !== WORKFLOWS || attemptOne !== WORKFLOWS) {
      throw new Error(`visibility: ${runningCount} of ${WORKFLOWS} campaigns running, ${attemptOne} at attempt 1 (${totalCount} in all)`);
    }

    // While they wait.
    await sleep(2_000);
    const waiting = await health();
    const parkedWorker = worker.samplesBetween(waiting.from, waiting.to);
    const atParked = parkedWorker[parkedWorker.length - 1] ?? worker.latest();

    // Sanity, outside every clock: a few campaigns answer retrying, attempt 1, next try a day away,
    // and the last ones to park have a started timer as their last event.
    const sampleIds = [...new Set([workflowIds[0]!, workflowIds[Math.floor(WORKFLOWS / 2)]!, ...parked.lastParked])];
    for (const id of sampleIds) {
      const view = await client.workflow.getHandle(id).query(dunningStateQuery);
      if (view.state !== 'retrying' || view.attempt !== 1 || view.nextAttemptAt === null || view.nextAttemptAt < Date.now() + 23 * 3_600_000) {
        throw new Error(`${id} is not parked on its first retry: ${JSON.stringify({ ...view, policy: view.policy?.name })}`);
      }
    }
    for (const id of parked.lastParked) {
      const history = await client.workflow.getHandle(id).fetchHistory();
      const last = history.events?.[history.events.length - 1];
      if (!last?.timerStartedEventAttributes) throw new Error(`${id}: last event is not TimerStarted but ${JSON.stringify(Object.keys(last ?? {}))}`);
    }

    const final = await worker.stop();
    const all = worker.samplesBetween(loadStarted, Date.now());
    const sampledPeak = Math.max(...all.map((s) => s.maxRssSinceLoad), 0);
    const peak = Math.max(sampledPeak, final.kernelPeakRssSinceLoad ?? 0);
    const idleRss = median(idleWorker.map((s) => s.rss));
    const parkedRss = median(parkedWorker.map((s) => s.rss));
    const serverPeak = serverPid ? Math.max(...serverRss.map((s) => s.rss), 0) : null;
    const mib = (bytes: number) => Math.round(bytes / MiB);
    const ms = (values: number[], p: number) => round2(percentile(values, p));
    const calls = atParked.activityCalls;
    const dbSize = full ? await postgresBytes(stack.databaseUrl, Object.values(full.databases)) : sqliteBytes(stack.temporalDbFile);
    const cpuShare = (w: HealthWindow) => (w.serverCpuSeconds === null ? 'n/a' : `${Math.round((w.serverCpuSeconds / ((w.to - w.from) / 1000)) * 100)}%`);
    const workerCpuShare = (samples: readonly WorkerSample[]) =>
      samples.length > 1 ? `${Math.round(((samples[samples.length - 1]!.cpuSeconds - samples[0]!.cpuSeconds) / ((samples[samples.length - 1]!.at - samples[0]!.at) / 1000)) * 100)}%` : 'n/a';

    return {
      name: temporal === 'full' ? 'dunning-parked-full-server' : 'dunning-parked',
      description:
        `${WORKFLOWS} dunning campaigns (dunningWorkflow, production bundle and data converter: payloads KMS-encrypted) started ` +
        `directly from a client, ${CONCURRENCY} starts in flight, each left parked on its first retry timer (policy: first retry a day ` +
        `after the failure, grace period 7 days) after its first notice. No parent subscription workflow: each campaign's two ` +
        `dunningProgress signals to it fail (external workflow not found) and are caught, as the workflow does when its ` +
        `subscription has ended. Activities are in-memory fakes, so the figures are Temporal's and the workflow code's, not ` +
        `PostgreSQL's. The worker (both task queues, maxCachedWorkflows as WORKER_MAX_CACHED_WORKFLOWS sets it unless BENCH_DUNNING_MAX_CACHED does, ` +
        `runtime logging at WARN) runs in a child process of its own so that its RSS is the worker's alone; baseline: the same ` +
        `worker's RSS idle (median over a ${WINDOW_SECONDS} s window before the load). Peak: the highest RSS from the first start ` +
        `on (the kernel's VmHWM, reset at the load, and a 100 ms sampler). Temporal: the ${serverName}; its health: latency of DescribeNamespace and of ` +
        `a visibility count (${COUNT_QUERY}), one call of each in flight, over ${WINDOW_SECONDS} s before the load and ${WINDOW_SECONDS} s ` +
        `while every campaign is parked. Parked = every campaign has started its day-long timer (a sink in a benchmark-only ` +
        `workflow interceptor), checked against visibility (all running, DunningAttempt = 1) and the last histories.`,
      measured: { label: `worker peak RSS, ${WORKFLOWS} campaigns started and parked`, value: mib(peak), unit: 'MiB' },
      baseline: { label: 'the same worker idle', value: mib(idleRss), unit: 'MiB' },
      ratio: peak / idleRss,
      ratioMeaning: 'times the idle worker (lower is better)',
      target: { description: 'worker peak RSS under 1 GiB', met: peak < TARGET_BYTES },
      details: {
        workflows: WORKFLOWS,
        startConcurrency: CONCURRENCY,
        startSeconds: round2(startSeconds),
        startsPerSecond: Math.round(WORKFLOWS / startSeconds),
        allNoticesQueuedSeconds: noticesSeconds === null ? 'n/a' : round2(noticesSeconds),
        allParkedSeconds: round2(parkedSeconds),
        parkedPerSecond: Math.round(WORKFLOWS / parkedSeconds),
        visibilityAllAtAttempt1Seconds: round2((visibleAt - loadStarted) / 1000),
        visibilityRunning: runningCount,
        activityCalls: Object.entries(calls)
          .map(([name, n]) => `${name} ${n}`)
          .join(', '),
        workerMaxCachedWorkflows: `${running.maxCachedWorkflows} (${process.env.BENCH_DUNNING_MAX_CACHED !== undefined ? 'set by BENCH_DUNNING_MAX_CACHED' : 'WORKER_MAX_CACHED_WORKFLOWS'})`,
        workerCachedWorkflowsParked: atParked.cachedWorkflows,
        workerIdleRssMiB: mib(idleRss),
        workerParkedRssMiB: mib(parkedRss),
        workerPeakRssMiB: mib(peak),
        workerPeakRssSampledMiB: mib(sampledPeak),
        workerPeakRssKernelMiB: final.kernelPeakRssSinceLoad === null ? 'n/a' : mib(final.kernelPeakRssSinceLoad),
        workerIdleHeapUsedMiB: mib(median(idleWorker.map((s) => s.heapUsed))),
        workerParkedHeapUsedMiB: mib(median(parkedWorker.map((s) => s.heapUsed))),
        workerIdleHeapTotalMiB: mib(median(idleWorker.map((s) => s.heapTotal))),
        workerParkedHeapTotalMiB: mib(median(parkedWorker.map((s) => s.heapTotal))),
        workerParkedExternalMiB: mib(median(parkedWorker.map((s) => s.external))),
        workerCpuSecondsStartToParked: round2(workerCpuLoad),
        workerCpuIdle: workerCpuShare(idleWorker),
        workerCpuParked: workerCpuShare(parkedWorker),
        describeNamespaceIdleP50Ms: ms(idle.describeMs, 0.5),
        describeNamespaceIdleP99Ms: ms(idle.describeMs, 0.99),
        describeNamespaceParkedP50Ms: ms(waiting.describeMs, 0.5),
        describeNamespaceParkedP99Ms: ms(waiting.describeMs, 0.99),
        describeNamespaceP50Ratio: round2(percentile(waiting.describeMs, 0.5) / percentile(idle.describeMs, 0.5)),
        describeNamespaceP99Ratio: round2(percentile(waiting.describeMs, 0.99) / percentile(idle.describeMs, 0.99)),
        describeNamespaceCalls: `${idle.describeMs.length} idle, ${waiting.describeMs.length} parked`,
        countIdleP50Ms: ms(idle.countMs, 0.5),
        countIdleP99Ms: ms(idle.countMs, 0.99),
        countParkedP50Ms: ms(waiting.countMs, 0.5),
        countParkedP99Ms: ms(waiting.countMs, 0.99),
        countP50Ratio: round2(percentile(waiting.countMs, 0.5) / percentile(idle.countMs, 0.5)),
        countP99Ratio: round2(percentile(waiting.countMs, 0.99) / percentile(idle.countMs, 0.99)),
        countCalls: `${idle.countMs.length} idle, ${waiting.countMs.length} parked`,
        temporal: serverName,
        serverPid: serverPid ?? 'not found',
        serverIdleRssMiB: idle.serverRss.length ? mib(median(idle.serverRss)) : 'n/a',
        serverParkedRssMiB: waiting.serverRss.length ? mib(median(waiting.serverRss)) : 'n/a',
        serverPeakRssMiB: serverPeak === null ? 'n/a' : mib(serverPeak),
        serverCpuIdle: cpuShare(idle),
        serverCpuParked: cpuShare(waiting),
        [temporal === 'full' ? 'serverPostgresMiB' : 'serverSqliteMiB']: dbSize === null ? 'n/a' : round2(dbSize / MiB),
      },
    };
  } finally {
    for (const close of closers.reverse()) await close().catch((err) => console.error('teardown:', err));
    await stop();
  }
}

async function countOf(client: Client, query: string): Promise<number> {
  return (await client.workflow.count(query)).count;
}

interface WorkerProcess {
  start(message: Extract<ParentMessage, { type: 'start' }>): Promise<Extract<ChildMessage, { type: 'running' }>>;
  /** Resets the worker's peak RSS: the load starts now. */
  load(): Promise<void>;
  /** Resolves when every campaign has started its parked timer; rejects when none more has for `stallMs`. */
  parked(stallMs: number): Promise<{ at: number; lastParked: readonly string[] }>;
  readonly noticesQueuedAt: number | undefined;
  latest(): WorkerSample;
  samplesBetween(from: number, to: number): WorkerSample[];
  /** Drains the worker and ends the child; idempotent. */
  stop(): Promise<{ kernelPeakRssSinceLoad: number | null }>;
}

/** dunning-parked-worker.ts in a child process (through tsx's loader), driven over IPC. */
async function startWorkerProcess(): Promise<WorkerProcess> {
  const child: ChildProcess = fork(path.resolve(__dirname, 'dunning-parked-worker.ts'), [], {
    execArgv: ['--import', pathToFileURL(require.resolve('tsx')).href],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const samples: WorkerSample[] = [];
  let noticesQueuedAt: number | undefined;
  let parkedMessage: { at: number; lastParked: readonly string[] } | undefined;
  let failure: Error | undefined;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };
  const replies: ChildMessage[] = [];
  child.on('message', (message: ChildMessage) => {
    if (message.type === 'sample') {
      const { type: _, ...sample } = message;
      samples.push(sample);
    } else if (message.type === 'noticesQueued') noticesQueuedAt = message.at;
    else if (message.type === 'parked') parkedMessage = { at: message.at, lastParked: message.lastParked };
    else if (message.type === 'error') failure = new Error(`dunning worker: ${message.error}`);
    else replies.push(message);
    wake();
  });
  void exited.then((code) => {
    failure ??= new Error(`the dunning worker exited (${code})`);
    wake();
  });
  const until = <T>(pick: () => T | undefined, timeoutMs: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => done(new Error(`dunning worker: no ${what} after ${Math.round(timeoutMs / 1000)} s`)), Math.max(timeoutMs, 0)) : undefined;
      const done = (err?: Error, value?: T) => {
        clearTimeout(timer);
        waiters.delete(check);
        if (err) reject(err);
        else resolve(value as T);
      };
      const check = () => {
        let value: T | undefined;
        try {
          value = pick();
        } catch (err) {
          done(err as Error);
          return;
        }
        if (value !== undefined) done(undefined, value);
        else if (failure) done(failure);
      };
      waiters.add(check);
      check();
    });
  const reply = <K extends ChildMessage['type']>(type: K, timeoutMs: number) =>
    until(() => {
      const index = replies.findIndex((r) => r.type === type);
      return index < 0 ? undefined : (replies.splice(index, 1)[0] as Extract<ChildMessage, { type: K }>);
    }, timeoutMs, type);

  let stopping: Promise<{ kernelPeakRssSinceLoad: number | null }> | undefined;
  return {
    async start(message) {
      child.send(message);
      return reply('running', 120_000);
    },
    async load() {
      child.send({ type: 'load' } satisfies ParentMessage);
      await reply('loadStarted', 10_000);
    },
    parked(stallMs) {
      let lastCount = -1;
      let lastProgressAt = Date.now();
      return until(
        () => {
          if (parkedMessage) return parkedMessage;
          const last = samples[samples.length - 1];
          if (last && last.parked !== lastCount) {
            lastCount = last.parked;
            lastProgressAt = Date.now();
          }
          if (Date.now() - lastProgressAt > stallMs) {
            throw new Error(`dunning worker: no campaign parked for ${stallMs / 1000} s (last sample: ${JSON.stringify({ ...last, activityCalls: undefined })})`);
          }
          return undefined;
        },
        Number.POSITIVE_INFINITY,
        'parked report',
      );
    },
    get noticesQueuedAt() {
      return noticesQueuedAt;
    },
    latest() {
      const last = samples[samples.length - 1];
      if (!last) throw new Error('dunning worker: no sample yet');
      return last;
    },
    samplesBetween(from, to) {
      return samples.filter((s) => s.at >= from && s.at <= to);
    },
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return { kernelPeakRssSinceLoad: null };
        child.send({ type: 'stop' } satisfies ParentMessage);
        try {
          const stopped = await reply('stopped', 60_000);
          return { kernelPeakRssSinceLoad: stopped.kernelPeakRssSinceLoad };
        } catch {
          child.kill('SIGKILL');
          return { kernelPeakRssSinceLoad: null };
        } finally {
          await exited;
        }
      })();
      return stopping;
    },
  };
}

/**
 * The pid of the dev server @temporalio/testing started for this run (a child of this
 * process, spawned by the SDK's core): `temporal server start-dev ... --port <port>`.
 */
function devServerPid(address: string): number | undefined {
  const port = address.slice(address.lastIndexOf(':') + 1);
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const at = args.indexOf('--port');
      if (args.includes('start-dev') && at >= 0 && args[at + 1] === port) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

function processRss(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function processCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** The size of the full server's databases (persistence and visibility), as PostgreSQL counts them. */
async function postgresBytes(ownerUrl: string, databases: readonly string[]): Promise<number | null> {
  const db = createDb(ownerUrl, { max: 1 });
  try {
    const names = databases.map((url) => new URL(url).pathname.slice(1));
    const row = await sql<{ bytes: string }>`select sum(pg_database_size(datname))::text as bytes from pg_database where datname in (${sql.join(names)})`.execute(db);
    const bytes = Number(row.rows[0]?.bytes);
    return Number.isFinite(bytes) ? bytes : null;
  } finally {
    await db.destroy();
  }
}

/** The dev server's SQLite file with its write-ahead log. */
function sqliteBytes(file: string): number | null {
  let total = 0;
  let found = false;
  for (const f of [file, `${file}-wal`]) {
    try {
      total += statSync(f).size;
      found = true;
    } catch {
      // absent
    }
  }
  return found ? total : null;
}

/** Nearest-rank percentile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
