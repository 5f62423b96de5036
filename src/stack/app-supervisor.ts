import { spawn, type ChildProcess } from 'node:child_process';
import { errorMessage, type Logger } from '../log';

/** What the app process tells its supervisor once it serves. */
export interface AppReadyMessage {
  readonly type: 'ready';
  readonly apiUrl: string;
  readonly codecUrl: string;
  /** Its Prometheus endpoint (METRICS_HOST/METRICS_PORT). */
  readonly metricsUrl: string;
}

export interface SupervisedApp {
  /** The first start: resolves once the app serves, rejects if it exits before. */
  readonly ready: Promise<AppReadyMessage>;
  /** The running app process's pid, if one runs. */
  pid(): number | undefined;
  /** SIGTERM to the app (SIGKILL after `graceMs`); it is not restarted. */
  stop(graceMs?: number): Promise<void>;
}

export interface SuperviseOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly log: Logger;
  /** First wait before a restart (default 1 s); doubles per crash, at most `maxRestartMs`. */
  readonly firstRestartMs?: number;
  readonly maxRestartMs?: number;
  /** An app that ran this long counts as healthy again: the next crash waits `firstRestartMs` (default 60 s). */
  readonly healthyAfterMs?: number;
}

/**
 * Runs the app process (API, workers, codec server) and restarts it, with backoff, whenever
 * it dies after its first successful start; every restart is logged. The app talks to the
 * supervisor over an IPC channel: it says when it is ready, and it stops by itself when the
 * channel closes, so it never outlives its supervisor, however that one ends.
 */
export function superviseApp(options: SuperviseOptions): SupervisedApp {
  const first = options.firstRestartMs ?? 1_000;
  const max = options.maxRestartMs ?? 30_000;
  const healthyAfter = options.healthyAfterMs ?? 60_000;
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stopping = false;
  let everReady = false;
  let crashes = 0;
  let restartTimer: NodeJS.Timeout | undefined;
  let settleFirst!: { resolve(m: AppReadyMessage): void; reject(err: Error): void };
  const ready = new Promise<AppReadyMessage>((resolve, reject) => (settleFirst = { resolve, reject }));

  const launch = () => {
    const startedAt = Date.now();
    // A process group of its own: a terminal's Ctrl-C reaches the supervisor only, which then stops
    // the app once, gracefully. The IPC channel still ends the app if the supervisor dies.
    const next = spawn(options.command, [...options.args], { env: options.env ?? process.env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true });
    child = next;
    next.on('message', (message: unknown) => {
      if ((message as { type?: unknown })?.type !== 'ready') return;
      if (!everReady) settleFirst.resolve(message as AppReadyMessage);
      else options.log.info({ pid: next.pid ?? null, restarts: crashes }, 'app process restarted');
      everReady = true;
    });
    next.on('error', (err) => options.log.error({ reason: errorMessage(err) }, 'app process could not start'));
    exited = new Promise((resolve) =>
      next.on('exit', (code, signal) => {
        if (child === next) child = undefined;
        resolve();
        if (stopping) return;
        if (!everReady) return settleFirst.reject(new Error(`the app process exited during start-up (code ${code}, signal ${signal})`));
        if (Date.now() - startedAt >= healthyAfter) crashes = 0;
        const waitMs = Math.min(first * 2 ** crashes, max);
        crashes++;
        options.log.error({ code, signal, inMs: waitMs, restarts: crashes }, 'app process exited; restarting');
        restartTimer = setTimeout(launch, waitMs);
      }),
    );
  };
  launch();

  return {
    ready,
    pid: () => child?.pid,
    async stop(graceMs = 20_000) {
      stopping = true;
      clearTimeout(restartTimer);
      const running = child;
      if (!running) return;
      running.kill('SIGTERM');
      const timer = setTimeout(() => running.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Calls `onGone` once the process that started this one is gone. Needed because npm, sent
 * SIGTERM, ends its shell without passing the signal on: `npm start`'s node process is then
 * re-parented, and this is how it learns that it must stop (and stop its children).
 */
export function onParentGone(onGone: () => void, everyMs = 500): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    onGone();
  }, everyMs);
  return () => clearInterval(timer);
}
