import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import pg from 'pg';
import { loadConfig, type Config, ownerDatabaseUrl } from '../src/config/config';
import { connectionOptions, createDb } from '../src/db/database';
import { createKmsClient, ensureMasterKeys } from '../src/kms/kms-client';
import { createLogger } from '../src/log';
import { startApi, startWorker, type Running, type RunningServer } from '../src/runtime';
import { createServices, type Services } from '../src/services';
import { startLocalServers, type LocalServers } from '../src/stack/local-servers';
import { freePort } from '../src/stack/process';
import { connectClient } from '../src/temporal/connection';
import { bundleWorkflows } from '../src/worker/worker';
import { envFor, startTestServers } from '../test/support/servers';
import { tokenFor } from '../test/support/tokens';
import { machine, RESULTS_DIR } from './lib';

/**
 * `npm run chaos`: customer registrations (the saga that touches PostgreSQL, KMS and
 * Stripe) through the real API and real workers while a dependency misbehaves, on the real
 * servers (Temporal dev server, PostgreSQL, a KMS of the run's own, stripe-mock behind a
 * fault-injecting, recording proxy), loopback only, bounded in count and time. Writes
 * bench/results/chaos.json and chaos.md.
 *
 * Per scenario: runs (registrations asked for and answered 202), completed, compensated,
 * duplicates (Stripe creations answered 2xx more than once for one idempotency key: the
 * effect a retry without Stripe's idempotency would double), lost (answered 202 yet not
 * completed once the fault is over), crashes (the API or a worker ended), and
 * recoverySeconds (from the end of the fault until every run completed).
 */
interface ScenarioResult {
  readonly name: string;
  readonly runs: number;
  readonly completed: number;
  readonly compensated: number;
  readonly duplicates: number;
  readonly lost: number;
  readonly crashes: number;
  readonly recoverySeconds: number;
}

const RUNS = Number(process.env.CHAOS_RUNS ?? 30);
const SETTLE_TIMEOUT_MS = 180_000;

interface FaultProxy {
  readonly url: string;
  /** 2xx answers per `POST <path>` idempotency key. */
  readonly successes: Map<string, number>;
  faultRate: number;
  close(): Promise<void>;
}

/** In front of stripe-mock: answers `faultRate` of requests 429, 500 or with a reset connection, forwards the rest. */
async function startFaultProxy(target: string): Promise<FaultProxy> {
  const upstream = new URL(target);
  const successes = new Map<string, number>();
  const proxy: Partial<FaultProxy> & { faultRate: number } = { faultRate: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (Math.random() < proxy.faultRate) {
        const kind = Math.floor(Math.random() * 3);
        if (kind === 0) return void res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end(JSON.stringify({ error: { type: 'rate_limit_error', message: 'chaos' } }));
        if (kind === 1) return void res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { type: 'api_error', message: 'chaos' } }));
        return void req.socket.destroy();
      }
      const forwarded = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (answer) => {
        const key = req.headers['idempotency-key'];
        if (req.method === 'POST' && typeof key === 'string' && (answer.statusCode ?? 0) < 300) {
          const id = `${req.url!.split('?')[0]} ${key}`;
          successes.set(id, (successes.get(id) ?? 0) + 1);
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forwarded.on('error', () => res.writeHead(502).end());
      forwarded.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(proxy, {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    successes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }) as FaultProxy;
}

interface World {
  config: Config;
  api: RunningServer;
  worker: Running;
  apiServices: Services;
  workerServices: Services;
  client: Client;
  proxy: FaultProxy;
  kms: { stop(): Promise<void>; start(): Promise<void> };
  token: string;
  crashes: () => number;
}

async function main(): Promise<void> {
  const { stack, stop } = await startTestServers('chaos');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-chaos-'));
  const closers: (() => Promise<unknown>)[] = [];
  const results: ScenarioResult[] = [];
  let crashes = 0;
  process.on('uncaughtException', (err) => {
    crashes++;
    process.stderr.write(`chaos: uncaught ${err.name}\n`);
  });
  try {
    const proxy = await startFaultProxy(stack.stripeApiUrl);
    closers.push(() => proxy.close());
    const kmsPort = await freePort();
    const kmsConfig = loadConfig(envFor(stack, { LEDGERLOCK_DATA_DIR: dataDir, KMS_ENDPOINT: '', KMS_PORT: String(kmsPort) }));
    let kmsServers: LocalServers | undefined = await startLocalServers(kmsConfig, path.join(dataDir, 'logs'));
    closers.push(async () => kmsServers?.stop());
    const keys = createKmsClient(kmsConfig);
    await ensureMasterKeys(keys, kmsConfig).finally(() => keys.destroy());

    const config = loadConfig(
      envFor(stack, { KMS_ENDPOINT: `http://127.0.0.1:${kmsPort}`, STRIPE_API_URL: proxy.url, TEMPORAL_TASK_QUEUE: `chaos-${randomUUID().slice(0, 8)}`, LOG_LEVEL: 'error' }),
    );
    const quiet = createLogger('error');
    const apiServices = createServices(config, quiet);
    const workerServices = createServices(config, quiet);
    closers.push(() => apiServices.close(), () => workerServices.close());
    const worker = await startWorker(config, quiet, workerServices, await bundleWorkflows());
    closers.push(() => worker.stop());
    const api = await startApi(config, quiet, apiServices);
    closers.push(() => api.stop());
    const client = await connectClient(config, apiServices.dataConverter);
    closers.push(() => client.connection.close());
    const world: World = {
      config,
      api,
      worker,
      apiServices,
      workerServices,
      client,
      proxy,
      token: await tokenFor(config, 'chaos-signup', ['customers:write']),
      crashes: () => crashes,
      kms: {
        stop: async () => {
          await kmsServers?.stop();
          kmsServers = undefined;
        },
        start: async () => {
          kmsServers = await startLocalServers(kmsConfig, path.join(dataDir, 'logs'));
        },
      },
    };

    results.push(await scenario(world, 'postgres-connections-terminated', async (during) => {
      const admin = new pg.Client(connectionOptions(ownerDatabaseUrl(config)));
      await admin.connect();
      try {
        await during(async (stillRunning) => {
          while (stillRunning()) {
            await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
            await new Promise((resolve) => setTimeout(resolve, 2_000));
          }
        });
      } finally {
        await admin.end();
      }
    }));

    results.push(await scenario(world, 'kms-stopped-20s', async (during) => {
      await during(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await world.kms.stop();
        await new Promise((resolve) => setTimeout(resolve, 20_000));
        await world.kms.start();
      }, { registerFirst: true });
    }));

    results.push(await scenario(world, 'stripe-10pct-429-500-reset', async (during) => {
      proxy.faultRate = 0.1;
      await during(async () => new Promise((resolve) => setTimeout(resolve, 15_000)));
      proxy.faultRate = 0;
    }));
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  writeResults(results);
}

type During = (fault: (stillRunning: () => boolean) => Promise<unknown>, options?: { registerFirst?: boolean }) => Promise<void>;

/**
 * Registers RUNS customers (in parallel, 4 at a time) while `fault` runs, then waits for
 * every saga to end and counts. With `registerFirst`, the registrations are answered
 * before the fault starts (a KMS outage refuses new registrations with 503, by design).
 */
async function scenario(world: World, name: string, inject: (during: During) => Promise<void>): Promise<ScenarioResult> {
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes();
  const before = new Map(world.proxy.successes);
  const accepted: { customerId: string; workflowId: string }[] = [];
  let faultEndedAt = Date.now();
  const register = async () => {
    const queue = Array.from({ length: RUNS }, (_, i) => i);
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
          const key = `${name}-${i}-${randomUUID()}`;
          // A client retries a refused (503) or failed request with the same Idempotency-Key, as the API asks.
          for (let attempt = 0; attempt < 60; attempt++) {
            const res = await fetch(`${world.api.url}/v1/customers`, {
              method: 'POST',
              headers: { 'content-type': 'application/json', authorization: `Bearer ${world.token}`, 'idempotency-key': key },
              body: JSON.stringify({ email: `chaos-${i}@example.com`, name: `Chaos ${i}`, country: i % 2 ? 'DE' : 'US' }),
            }).catch(() => undefined);
            if (res?.status === 202) {
              accepted.push((await res.json()) as { customerId: string; workflowId: string });
              break;
            }
            await res?.arrayBuffer();
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
        }
      }),
    );
  };
  await inject(async (fault, options = {}) => {
    let running = true;
    if (options.registerFirst) await register();
    const faulting = fault(() => running).finally(() => (faultEndedAt = Date.now()));
    if (!options.registerFirst) await register();
    running = false;
    await faulting;
  });

  const settled = await Promise.all(
    accepted.map(async ({ workflowId }) => {
      const handle = world.client.workflow.getHandle(workflowId);
      try {
        await Promise.race([handle.result(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), SETTLE_TIMEOUT_MS))]);
        return { outcome: 'completed' as const, at: Date.now() };
      } catch (err) {
        return { outcome: (err as Error).message === 'timeout' ? ('lost' as const) : ('compensated' as const), at: Date.now() };
      }
    }),
  );
  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  let compensatedInAudit = 0;
  try {
    const rows = await db.selectFrom('customers').select(['id', 'status']).where('id', 'in', accepted.length ? accepted.map((a) => a.customerId) : ['none']).execute();
    compensatedInAudit = rows.filter((r) => r.status === 'erased').length;
  } finally {
    await db.destroy();
  }
  let duplicates = 0;
  for (const [id, count] of world.proxy.successes) duplicates += Math.max(0, count - Math.max(before.get(id) ?? 0, 1));
  const lastDone = Math.max(faultEndedAt, ...settled.map((s) => s.at));
  return {
    name,
    runs: accepted.length,
    completed: settled.filter((s) => s.outcome === 'completed').length,
    compensated: Math.max(settled.filter((s) => s.outcome === 'compensated').length, compensatedInAudit),
    duplicates,
    lost: settled.filter((s) => s.outcome === 'lost').length + (RUNS - accepted.length),
    crashes: world.crashes() - crashesBefore,
    recoverySeconds: Math.round((lastDone - faultEndedAt) / 100) / 10,
  };
}

function writeResults(scenarios: readonly ScenarioResult[]): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const doc = { machine: machine(), measuredAt: new Date().toISOString(), runsPerScenario: RUNS, scenarios };
  writeFileSync(path.join(RESULTS_DIR, 'chaos.json'), JSON.stringify(doc, null, 2) + '\n');
  const rows = scenarios.map((s) => `| ${s.name} | ${s.runs} | ${s.completed} | ${s.compensated} | ${s.duplicates} | ${s.lost} | ${s.crashes} | ${s.recoverySeconds} |`);
  writeFileSync(
    path.join(RESULTS_DIR, 'chaos.md'),
    [
      `# Chaos (${doc.measuredAt})`,
      '',
      `Machine: ${JSON.stringify(doc.machine)}`,
      '',
      '| scenario | runs | completed | compensated | duplicates | lost | crashes | recovery s |',
      '|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
    ].join('\n'),
  );
  process.stdout.write(`${rows.join('\n')}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
