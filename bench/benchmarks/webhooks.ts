import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import express from 'express';
import { sql } from 'kysely';
import pg from 'pg';
import { connectionOptions, createDb, dropDatabase, ensureDatabase } from '../../src/db/database';
import { migrate } from '../../src/db/migrate';
import { createApp } from '../../src/http/app';
import { createLogger } from '../../src/log';
import { createStripeWebhookRouter, STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import type { BenchResult } from '../lib';
import type { LoadFigures, LoadPhase } from './webhooks-load';

const CONNECTIONS = 10;
const DURATION_SECONDS = 10;
const WARM_UP_SECONDS = 2;
const TARGET_P99_MS = 50;
/** The application role the API runs as (DATABASE_APP_URL's local default user, created by the migrations); here taken with SET ROLE. */
const APP_ROLE = 'ledgerlock_app';

/**
 * Signed Stripe webhooks (`invoice.paid`, about 3 KB, each with a fresh event id) POSTed
 * on loopback over 10 keep-alive connections for 10 s to the real route
 * (createStripeWebhookRouter in createApp: signature check, parse, routing, row committed
 * to `stripe_events` before the 200), against a bare Express endpoint that answers 200
 * without reading anything, same bodies, connections and duration, same run. The load
 * generator (autocannon) runs in a child process of its own; the servers share this one.
 */
export async function webhooksBenchmark(env: { databaseUrl: string }): Promise<BenchResult> {
  const url = new URL(env.databaseUrl);
  url.pathname = `/ledgerlock_bench_webhooks_${process.pid}_${Date.now().toString(36)}`;
  const databaseUrl = url.toString();
  const closers: (() => Promise<unknown>)[] = [];
  try {
    await ensureDatabase(databaseUrl);
    closers.push(() => dropWhenClosed(databaseUrl));
    const admin = createDb(databaseUrl, { max: 1 });
    closers.push(() => admin.destroy());
    await migrate(admin);
    // As the API has it (src/services.ts): the app role, the default pool of 10.
    const db = createDb(databaseUrl, { role: APP_ROLE });
    closers.push(() => db.destroy());

    const secret = `whsec_${randomBytes(32).toString('base64url')}`;
    // Production logs at info: one JSON line per event. Built (JSON.stringify) but not written.
    let logLines = 0;
    const log = createLogger('info', {}, () => void logLines++);
    const up = async () => undefined;
    const webhookApp = createApp({
      log,
      healthChecks: { temporal: up, postgres: up, kms: up, stripe: up },
      rawBodyRouters: [createStripeWebhookRouter({ db, secrets: [secret], log })],
    });
    const bareApp = express();
    bareApp.post('/bare', (_req, res) => {
      res.status(200).json({ received: true });
    });
    const webhookUrl = (await listen(webhookApp, closers)) + STRIPE_WEBHOOK_PATH;
    const bareUrl = (await listen(bareApp, closers)) + '/bare';

    const load = await startLoadGenerator();
    closers.push(() => load.stop());

    const runTag = randomBytes(4).toString('hex');
    const phase = async (name: string, target: string, seconds: number): Promise<LoadFigures & { idPrefix: string; serverCpuSeconds: number }> => {
      const idPrefix = `${runTag}${name}`;
      const cpuBefore = process.cpuUsage();
      const figures = await load.run({ url: target, connections: CONNECTIONS, durationSeconds: seconds, secret, idPrefix });
      const cpu = process.cpuUsage(cpuBefore);
      process.stdout.write(
        `  ${name.padEnd(13)} ${(figures.ok2xx / figures.seconds).toFixed(0).padStart(6)} req/s, p50 ${figures.p50Ms.toFixed(2)} ms, ` +
          `p99 ${figures.p99Ms.toFixed(2)} ms, 2xx ${figures.ok2xx}, non-2xx ${figures.non2xx}, errors ${figures.errors}\n`,
      );
      return { ...figures, idPrefix, serverCpuSeconds: (cpu.user + cpu.system) / 1e6 };
    };
    // Warm-up: JIT, the pool's connections, PostgreSQL's caches.
    await phase('warmbare', bareUrl, WARM_UP_SECONDS);
    await phase('warmhooks', webhookUrl, WARM_UP_SECONDS);
    const bare = await phase('bare', bareUrl, DURATION_SECONDS);
    const hooks = await phase('webhooks', webhookUrl, DURATION_SECONDS);

    // Every acknowledged event has its row; so do the requests the generator cut off when
    // it stopped (sent, answered after it closed its connections): the route finished them.
    const rows = await settledCount(db, hooks.idPrefix);
    const cutOff = rows - hooks.ok2xx;
    if (hooks.errors || hooks.non2xx || cutOff !== hooks.unanswered) {
      throw new Error(
        `webhooks: ${hooks.ok2xx} answered 2xx, ${hooks.non2xx} non-2xx ${JSON.stringify(hooks.statusCodes)}, ${hooks.errors} errors ` +
          `(${hooks.timeouts} timeouts), ${hooks.unanswered} cut off at stop, but ${rows} rows in stripe_events`,
      );
    }

    const webhookRps = hooks.ok2xx / hooks.seconds;
    const bareRps = bare.ok2xx / bare.seconds;
    const ratio = webhookRps / bareRps;
    const round2 = (n: number) => Math.round(n * 100) / 100;
    const cpuMsPer = (f: { serverCpuSeconds: number; ok2xx: number }) => round2((f.serverCpuSeconds * 1000) / f.ok2xx);
    return {
      name: 'webhooks',
      description:
        `signed invoice.paid webhooks (~${Math.round(hooks.meanBodyBytes)} B, a fresh event id each) POSTed on loopback, ` +
        `${CONNECTIONS} keep-alive connections, ${DURATION_SECONDS} s each side after ${WARM_UP_SECONDS} s warm-ups, to the real ` +
        `route (createApp + createStripeWebhookRouter: signature, parse, routing, row committed to stripe_events before the 200); ` +
        `baseline a bare Express endpoint answering 200 unread, same bodies, connections and duration, same run`,
      measured: { label: 'verified webhooks acknowledged', value: webhookRps, unit: 'req/s' },
      baseline: { label: 'bare Express endpoint', value: bareRps, unit: 'req/s' },
      ratio,
      ratioMeaning: 'of bare-Express throughput (higher is better)',
      target: {
        description: `webhook p99 < ${TARGET_P99_MS} ms (${round2(hooks.p99Ms)} ms), no errors or non-2xx`,
        met: hooks.p99Ms < TARGET_P99_MS && hooks.errors === 0 && hooks.non2xx === 0,
      },
      details: {
        connections: CONNECTIONS,
        durationSeconds: DURATION_SECONDS,
        webhookP50Ms: round2(hooks.p50Ms),
        webhookP90Ms: round2(hooks.p90Ms),
        webhookP99Ms: round2(hooks.p99Ms),
        webhookMaxMs: round2(hooks.maxMs),
        bareP50Ms: round2(bare.p50Ms),
        bareP90Ms: round2(bare.p90Ms),
        bareP99Ms: round2(bare.p99Ms),
        bareMaxMs: round2(bare.maxMs),
        webhook2xx: hooks.ok2xx,
        webhookNon2xx: hooks.non2xx,
        webhookErrors: hooks.errors,
        bare2xx: bare.ok2xx,
        bareNon2xx: bare.non2xx,
        bareErrors: bare.errors,
        stripeEventsRows: rows,
        webhooksCutOffAtStop: cutOff,
        meanBodyBytes: Math.round(hooks.meanBodyBytes),
        serverCpuMsPerWebhook: cpuMsPer(hooks),
        serverCpuMsPerBareRequest: cpuMsPer(bare),
        loadGeneratorCpuShareWebhooks: round2(hooks.cpuSeconds / hooks.seconds),
        loadGeneratorCpuShareBare: round2(bare.cpuSeconds / bare.seconds),
        logLinesBuilt: logLines,
        notes:
          'relay not running (the ack path does not need it: rows stay pending); load generator autocannon in a child process, ' +
          'servers (both apps) in the bench process; webhook logger at info level, lines built but discarded; pool of 10 as ' +
          `${APP_ROLE}; rows = 2xx + requests cut off at stop, checked; latencies per request in ms (request written → response read)`,
      },
    };
  } finally {
    for (const close of closers.reverse()) await close().catch((err) => console.error('teardown:', err));
  }
}

async function listen(app: http.RequestListener, closers: (() => Promise<unknown>)[]): Promise<string> {
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Counts a phase's rows once no request of it is still being recorded (the count stops moving). */
async function settledCount(db: ReturnType<typeof createDb>, idPrefix: string): Promise<number> {
  const count = async () =>
    Number(
      (await db
        .selectFrom('stripe_events')
        .select(sql<string>`count(*)`.as('n'))
        .where('event_id', 'like', `evt_${idPrefix}%`)
        .executeTakeFirstOrThrow()).n,
    );
  let last = await count();
  for (let i = 0; i < 50; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const now = await count();
    if (now === last) return now;
    last = now;
  }
  return last;
}

/**
 * Drops the database once its sessions are gone. A destroyed pool has only begun to close
 * its connections; DROP ... WITH (FORCE) would terminate them under it, and node-postgres
 * raises the termination as an unhandled pool error.
 */
async function dropWhenClosed(databaseUrl: string): Promise<void> {
  const name = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  const server = new URL(databaseUrl);
  server.pathname = '/postgres';
  const client = new pg.Client(connectionOptions(server.toString()));
  await client.connect();
  try {
    for (let i = 0; i < 50; i++) {
      const { rows } = await client.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (Number(rows[0]!.n) === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.end();
  }
  await dropDatabase(databaseUrl);
}

interface LoadGenerator {
  run(phase: LoadPhase): Promise<LoadFigures>;
  stop(): Promise<void>;
}

/** webhooks-load.ts in a child process (through tsx's loader), one phase at a time over IPC. */
async function startLoadGenerator(): Promise<LoadGenerator> {
  const child: ChildProcess = fork(path.resolve(__dirname, 'webhooks-load.ts'), [], {
    execArgv: ['--import', pathToFileURL(require.resolve('tsx')).href],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const next = <T>(): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code}) before answering`));
      child.once('exit', onExit);
      child.once('message', (message) => {
        child.off('exit', onExit);
        resolve(message as T);
      });
    });
  await next<{ ready: true }>();
  return {
    async run(phase) {
      const answer = next<{ ok: true; figures: LoadFigures } | { ok: false; error: string }>();
      child.send(phase);
      const reply = await answer;
      if (!reply.ok) throw new Error(`load generator: ${reply.error}`);
      return reply.figures;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.disconnect();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    },
  };
}
