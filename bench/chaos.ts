import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { loadConfig, ownerDatabaseUrl, type Config } from '../src/config/config';
import { connectionOptions, createDb, dropDatabase, ensureDatabase } from '../src/db/database';
import { migrate } from '../src/db/migrate';
import { createKmsClient, ensureMasterKeys } from '../src/kms/kms-client';
import { createLogger } from '../src/log';
import { startApi, type RunningServer } from '../src/runtime';
import { createServices, type Services } from '../src/services';
import { startLocalServers, type LocalServers } from '../src/stack/local-servers';
import { LEDGERLOCK_BIN, REPO_ROOT } from '../src/stack/paths';
import { freePort } from '../src/stack/process';
import { ensureServers } from '../src/stack/servers';
import { STRIPE_WEBHOOK_PATH } from '../src/webhooks/webhook-routes';
import { signStripePayload } from '../src/webhooks/signature';
import { tokenFor } from '../test/support/tokens';
import { machine, RESULTS_DIR } from './lib';

/**
 * `npm run chaos`: subscription sagas (POST /v1/subscriptions → active: PostgreSQL, KMS,
 * several Stripe calls, the audit trail) through the real API and a real worker process,
 * on real servers of the run's own (a Temporal dev server, a KMS and stripe-mock behind a
 * fault-injecting, recording proxy, a PostgreSQL database; for the restart scenario a
 * private PostgreSQL made with initdb), loopback only, bounded in count and time, while
 * one dependency misbehaves. Writes bench/results/chaos.json and chaos.md.
 *
 * Per scenario:
 * - runs: sagas the API answered 202 for (a client retries a 503 with the same Idempotency-Key);
 * - completed: active; compensated: failed (undone), which only a business refusal may cause;
 * - duplicates: Stripe objects created twice for one saga step, i.e. a second distinct
 *   idempotency key for the same Ledgerlock id and endpoint (a retry with the same key is
 *   Stripe's to deduplicate and is reported apart, as `sameKeyRetries`);
 * - lost: answered 202 but neither active nor failed once the fault is over and the sagas
 *   had time to settle; crashes: a worker or the API process that ended by itself;
 * - recoverySeconds: from the end of the fault until the last saga settled.
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
  readonly sameKeyRetries: number;
  readonly notes?: string;
}

const RUNS = Number(process.env.CHAOS_RUNS ?? 20);
const WEBHOOKS = Number(process.env.CHAOS_WEBHOOKS ?? 1000);
const SETTLE_TIMEOUT_MS = 240_000;
const WEBHOOK_SECRET = `whsec_chaos${randomUUID().replace(/-/g, '')}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ the fault proxy

interface StripeProxy {
  readonly url: string;
  faultRate: number;
  /** Ledgerlock id + endpoint → the distinct idempotency keys Stripe answered 2xx for, with counts. */
  readonly creations: Map<string, Map<string, number>>;
  close(): Promise<void>;
}

/** In front of stripe-mock: answers `faultRate` of requests 429, 500 or with a reset connection, records what succeeded. */
async function startStripeProxy(target: string): Promise<StripeProxy> {
  const upstream = new URL(target);
  const creations = new Map<string, Map<string, number>>();
  const state = { faultRate: 0 };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (Math.random() < state.faultRate) {
        const kind = Math.floor(Math.random() * 3);
        if (kind === 0) return void res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' }).end(JSON.stringify({ error: { type: 'rate_limit_error', message: 'chaos' } }));
        if (kind === 1) return void res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { type: 'api_error', message: 'chaos' } }));
        return void req.socket.destroy();
      }
      const raw = Buffer.concat(chunks);
      const forwarded = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: { ...req.headers, host: upstream.host } }, (answer) => {
        const key = req.headers['idempotency-key'];
        const body = new URLSearchParams(raw.toString());
        const ours = body.get('metadata[ledgerlock_subscription_id]') ?? body.get('metadata[ledgerlock_customer_id]');
        if (req.method === 'POST' && typeof key === 'string' && ours && (answer.statusCode ?? 0) < 300) {
          const id = `${ours} ${req.url!.split('?')[0]}`;
          const keys = creations.get(id) ?? new Map<string, number>();
          keys.set(key, (keys.get(key) ?? 0) + 1);
          creations.set(id, keys);
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forwarded.on('error', () => res.writeHead(502).end());
      forwarded.end(raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get faultRate() {
      return state.faultRate;
    },
    set faultRate(rate: number) {
      state.faultRate = rate;
    },
    creations,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

// ------------------------------------------------------------------ a private PostgreSQL

interface PrivatePostgres {
  readonly url: string;
  restart(): void;
  stop(): void;
}

/** A PostgreSQL of the run's own (initdb, pg_ctl, a free port, trust on loopback), run as the postgres user: restarting it touches no one else. */
async function startPrivatePostgres(dir: string): Promise<PrivatePostgres> {
  const bin = path.join('/usr/lib/postgresql', execFileSync('ls', ['/usr/lib/postgresql']).toString().trim().split('\n').sort().at(-1)!, 'bin');
  const port = await freePort();
  const data = path.join(dir, 'pgdata');
  mkdirSync(data, { recursive: true });
  chmodSync(dir, 0o755);
  const ids = execFileSync('id', ['-u', 'postgres']).toString().trim();
  chownSync(data, Number(ids), Number(execFileSync('id', ['-g', 'postgres']).toString().trim()));
  const asPostgres = (cmd: string, args: string[]) => execFileSync('runuser', ['-u', 'postgres', '--', path.join(bin, cmd), ...args], { stdio: 'ignore' });
  asPostgres('initdb', ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -c listen_addresses=127.0.0.1 -k ${data} -c fsync=off`;
  const ctl = (action: string, ...extra: string[]) => asPostgres('pg_ctl', ['-D', data, '-o', options, '-l', path.join(data, 'server.log'), '-w', ...extra, action]);
  ctl('start');
  return {
    url: `postgres://postgres@127.0.0.1:${port}/ledgerlock_chaos`,
    restart: () => ctl('restart', '-m', 'fast'),
    stop: () => ctl('stop', '-m', 'fast'),
  };
}

// ------------------------------------------------------------------ the world under test

interface World {
  readonly config: Config;
  readonly proxy: StripeProxy;
  api: RunningServer;
  apiServices: Services;
  readonly token: string;
  crashes: number;
  killWorker(): Promise<void>;
  startWorker(): Promise<void>;
  restartApi(): Promise<void>;
  stopKms(): Promise<void>;
  startKms(): Promise<void>;
  restartTemporal(): Promise<void>;
  close(): Promise<void>;
}

async function buildWorld(dataDir: string, toolsDir: string, databaseUrl: string): Promise<World> {
  const closers: (() => Promise<unknown>)[] = [];
  const [temporalPort, uiPort, kmsPort, stripePort, apiPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  // The servers this world runs itself: a dev server (restartable on its port, its SQLite file kept), KMS, stripe-mock.
  const serversConfig = loadConfig({
    ...process.env,
    LEDGERLOCK_DATA_DIR: dataDir,
    LEDGERLOCK_TOOLS_DIR: toolsDir,
    DATABASE_URL: databaseUrl,
    TEMPORAL_PORT: String(temporalPort),
    TEMPORAL_UI_PORT: String(uiPort),
    KMS_PORT: String(kmsPort),
    STRIPE_MOCK_PORT: String(stripePort),
    TEMPORAL_ADDRESS: '',
    KMS_ENDPOINT: '',
    STRIPE_API_URL: '',
    LOG_LEVEL: 'error',
  });
  let servers: LocalServers = await startLocalServers(serversConfig, path.join(dataDir, 'logs'));
  const kmsOnly = loadConfig({ ...process.env, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: toolsDir, DATABASE_URL: databaseUrl, KMS_PORT: String(kmsPort), KMS_ENDPOINT: '', TEMPORAL_ADDRESS: '127.0.0.1:1', STRIPE_API_URL: 'http://127.0.0.1:1' });
  const temporalOnly = loadConfig({ ...process.env, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: toolsDir, DATABASE_URL: databaseUrl, TEMPORAL_PORT: String(temporalPort), TEMPORAL_UI_PORT: String(uiPort), TEMPORAL_ADDRESS: '', KMS_ENDPOINT: 'http://127.0.0.1:1', STRIPE_API_URL: 'http://127.0.0.1:1' });
  let kms: LocalServers | undefined;
  let temporal: LocalServers | undefined;
  closers.push(async () => {
    await servers.stop();
    await kms?.stop();
    await temporal?.stop();
  });
  const proxy = await startStripeProxy(`http://127.0.0.1:${stripePort}`);
  closers.push(() => proxy.close());

  const env = {
    ...process.env,
    LEDGERLOCK_MODE: 'local',
    LEDGERLOCK_DATA_DIR: dataDir,
    LEDGERLOCK_TOOLS_DIR: toolsDir,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
    KMS_ENDPOINT: `http://127.0.0.1:${kmsPort}`,
    STRIPE_API_URL: proxy.url,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_MAX_ACTIVITIES_PER_SECOND: '200',
    API_PORT: String(apiPort),
    LOG_LEVEL: 'error',
    // Compressed for a bounded run: the relay retries Temporal at most a second apart.
    STRIPE_WEBHOOK_RETRY_MAX_SECONDS: '1',
  } as Record<string, string>;
  const config = loadConfig(env);
  await ensureDatabase(ownerDatabaseUrl(config));
  const owner = createDb(ownerDatabaseUrl(config), { max: 1 });
  await migrate(owner).finally(() => owner.destroy());
  const keys = createKmsClient(serversConfig);
  await ensureMasterKeys(keys, serversConfig).finally(() => keys.destroy());

  const quiet = createLogger('error');
  const world: World = {
    config,
    proxy,
    api: undefined as unknown as RunningServer,
    apiServices: createServices(config, quiet),
    token: await tokenFor(config, 'chaos-billing', ['subscriptions:write', 'subscriptions:read']),
    crashes: 0,
    killWorker: async () => undefined,
    startWorker: async () => undefined,
    async restartApi() {
      await world.api.stop();
      await sleep(1_000);
      world.api = await startApi(config, quiet, world.apiServices);
    },
    async stopKms() {
      // The KMS of `servers` is stopped by name; it comes back as a process of its own on the same port and key store.
      await servers.processes.find((p) => p.name !== 'temporal' && p.name !== 'stripe-mock')?.stop();
      await kms?.stop();
      kms = undefined;
    },
    async startKms() {
      kms = await startLocalServers(kmsOnly, path.join(dataDir, 'logs'));
    },
    async restartTemporal() {
      await servers.processes.find((p) => p.name === 'temporal')?.stop();
      await temporal?.stop();
      await sleep(3_000);
      temporal = await startLocalServers(temporalOnly, path.join(dataDir, 'logs'));
    },
    async close() {
      await world.killWorker();
      await world.api?.stop().catch(() => undefined);
      await world.apiServices.close();
      for (const close of closers.reverse()) await close().catch(() => undefined);
    },
  };
  world.api = await startApi(config, quiet, world.apiServices);

  // The worker is a process of its own (`ledgerlock worker`), so it can be SIGKILLed like a lost host.
  let worker: ChildProcess | undefined;
  let expectedExit = false;
  world.startWorker = async () => {
    expectedExit = false;
    const child = spawn(process.execPath, [LEDGERLOCK_BIN, 'worker'], { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
    worker = child;
    let out = '';
    child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
    child.on('exit', () => {
      if (!expectedExit && worker === child) {
        world.crashes++;
        process.stderr.write(`chaos: the worker ended by itself:\n${out.slice(-2000)}\n`);
      }
    });
    // Ready once it polls: an activity-free canary would do, but the schedule it upserts on start is proof enough.
    for (let i = 0; i < 600 && !/worker polling/.test(out) && child.exitCode === null; i++) await sleep(100);
  };
  world.killWorker = async () => {
    const child = worker;
    if (!child || child.exitCode !== null) return;
    expectedExit = true;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  await world.startWorker();
  return world;
}

// ------------------------------------------------------------------ scenarios

type Fault = (world: World, running: () => boolean) => Promise<unknown>;

/** Starts RUNS subscription sagas (4 at a time) while `fault` runs, lets them settle, counts. */
async function sagaScenario(world: World, name: string, fault: Fault, options: { faultFirst?: boolean; notes?: string } = {}): Promise<ScenarioResult> {
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes;
  const subscriptionIds: string[] = [];
  let faultEnded = 0;
  let running = true;
  const faulting = fault(world, () => running).finally(() => (faultEnded = Date.now()));
  if (options.faultFirst) await sleep(500);
  const queue = Array.from({ length: RUNS }, (_, i) => i);
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = queue.shift(); i !== undefined; i = queue.shift()) {
        const key = `${name}-${i}-${randomUUID()}`;
        for (let attempt = 0; attempt < 240; attempt++) {
          const res = await fetch(`${world.api.url}/v1/subscriptions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${world.token}`, 'idempotency-key': key },
            body: JSON.stringify({ customer: { email: `chaos-${i}@example.com`, name: `Chaos ${i}`, country: i % 2 ? 'DE' : 'US' }, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }),
          }).catch(() => undefined);
          if (res?.status === 202) {
            subscriptionIds.push(((await res.json()) as { subscriptionId: string }).subscriptionId);
            break;
          }
          await res?.arrayBuffer();
          await sleep(500);
        }
      }
    }),
  );
  running = false;
  await faulting;

  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  let statuses: { id: string; status: string }[] = [];
  let settledAt = Date.now();
  try {
    for (;;) {
      statuses = subscriptionIds.length
        ? await db.selectFrom('subscriptions').select(['id', 'status']).where('id', 'in', subscriptionIds).execute().catch(() => statuses)
        : [];
      settledAt = Date.now();
      if (statuses.filter((s) => s.status === 'active' || s.status === 'failed').length === subscriptionIds.length || Date.now() > deadline) break;
      await sleep(500);
    }
  } finally {
    await db.destroy();
  }
  const ours = new Set(subscriptionIds);
  let duplicates = 0;
  let sameKeyRetries = 0;
  for (const [id, keys] of world.proxy.creations) {
    if (!ours.has(id.split(' ')[0]!)) continue;
    duplicates += keys.size - 1;
    for (const count of keys.values()) sameKeyRetries += count - 1;
  }
  const completed = statuses.filter((s) => s.status === 'active').length;
  const compensated = statuses.filter((s) => s.status === 'failed').length;
  return {
    name,
    runs: subscriptionIds.length,
    completed,
    compensated,
    duplicates,
    lost: RUNS - completed - compensated,
    crashes: world.crashes - crashesBefore,
    recoverySeconds: Math.max(0, Math.round((settledAt - faultEnded) / 100) / 10),
    sameKeyRetries,
    ...(options.notes ? { notes: options.notes } : {}),
  };
}

/** 1,000 signed webhooks, 30% of them sent twice, shuffled, 8 at a time, while the API process restarts; Stripe-like retries of anything not 200. */
async function webhookScenario(world: World): Promise<ScenarioResult> {
  const name = 'webhooks-30pct-duplicates-api-restart';
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes;
  const unique = Array.from({ length: WEBHOOKS }, (_, i) => {
    const id = `evt_chaos${randomUUID().replace(/-/g, '')}`;
    // Events Ledgerlock records and does not act on: the count is the API's and the database's alone.
    return JSON.stringify({ id, object: 'event', type: 'charge.succeeded', livemode: false, created: Math.floor(Date.now() / 1000), api_version: '2025-03-31.basil', data: { object: { id: `ch_chaos${i}`, object: 'charge' } } });
  });
  const deliveries = [...unique, ...unique.filter(() => Math.random() < 0.3)].sort(() => Math.random() - 0.5);
  const restartAt = Math.floor(deliveries.length / 2);
  let sent = 0;
  let restarting: Promise<void> | undefined;
  let faultEnded = Date.now();
  const queue = [...deliveries];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      for (let body = queue.shift(); body; body = queue.shift()) {
        if (++sent === restartAt) restarting = world.restartApi().finally(() => (faultEnded = Date.now()));
        for (let attempt = 0; attempt < 120; attempt++) {
          const timestamp = Math.floor(Date.now() / 1000);
          const signature = signStripePayload(body, [WEBHOOK_SECRET], timestamp);
          const res = await fetch(`${world.api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body }).catch(() => undefined);
          await res?.arrayBuffer();
          if (res?.status === 200) break;
          await sleep(250);
        }
      }
    }),
  );
  await restarting;
  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  try {
    const ids = unique.map((b) => (JSON.parse(b) as { id: string }).id);
    const rows = await db.selectFrom('stripe_events').select('event_id').where('event_id', 'in', ids).execute();
    const recorded = new Set(rows.map((r) => r.event_id));
    return {
      name,
      runs: unique.length,
      completed: recorded.size,
      compensated: 0,
      duplicates: rows.length - recorded.size,
      lost: ids.filter((id) => !recorded.has(id)).length,
      crashes: world.crashes - crashesBefore,
      recoverySeconds: Math.round((Date.now() - faultEnded) / 100) / 10,
      sameKeyRetries: deliveries.length - unique.length,
      notes: 'completed = events recorded; duplicates = events recorded twice; sameKeyRetries = redeliveries sent',
    };
  } finally {
    await db.destroy();
  }
}

const terminateBackends = (databaseUrl: string): Fault => async (_world, running) => {
  const admin = new pg.Client(connectionOptions(databaseUrl));
  await admin.connect();
  try {
    do {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
      await sleep(2_000);
    } while (running());
  } finally {
    await admin.end();
  }
};

const killWorkerRepeatedly: Fault = async (world, running) => {
  do {
    await sleep(4_000);
    await world.killWorker();
    await sleep(1_000);
    await world.startWorker();
  } while (running());
};

async function main(): Promise<void> {
  const toolsDir = process.env.LEDGERLOCK_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools');
  await ensureServers(toolsDir);
  const root = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-chaos-'));
  const baseUrl = new URL(process.env.BENCH_DATABASE_URL ?? 'postgres://127.0.0.1:5432/postgres');
  baseUrl.pathname = `/ledgerlock_chaos_${process.pid}`;
  const results: ScenarioResult[] = [];
  const world = await buildWorld(path.join(root, 'shared'), toolsDir, baseUrl.toString());
  try {
    results.push(await sagaScenario(world, 'worker-sigkilled-every-5s', killWorkerRepeatedly));
    results.push(await sagaScenario(world, 'postgres-connections-terminated-every-2s', terminateBackends(ownerDatabaseUrl(world.config))));
    results.push(
      await sagaScenario(world, 'temporal-restarted', async (w) => {
        await sleep(2_000);
        await w.restartTemporal();
      }),
    );
    results.push(
      await sagaScenario(
        world,
        'kms-stopped-20s',
        async (w) => {
          await w.stopKms();
          await sleep(20_000);
          await w.startKms();
        },
        { faultFirst: true, notes: 'the API refuses new sagas with 503 kms while KMS is down (they need a data key); clients retry with the same Idempotency-Key' },
      ),
    );
    results.push(
      await sagaScenario(world, 'stripe-10pct-429-500-reset', async (w, running) => {
        w.proxy.faultRate = 0.1;
        while (running()) await sleep(250);
        w.proxy.faultRate = 0;
      }),
    );
    results.push(await webhookScenario(world));
  } finally {
    await world.close();
    await dropDatabase(baseUrl.toString()).catch(() => undefined);
  }

  // A real PostgreSQL restart, on a private instance: the shared one is never touched.
  const privateDir = path.join(root, 'private');
  mkdirSync(privateDir, { recursive: true });
  const postgres = await startPrivatePostgres(privateDir);
  try {
    const privateWorld = await buildWorld(path.join(root, 'private-world'), toolsDir, postgres.url);
    try {
      results.push(
        await sagaScenario(privateWorld, 'postgres-restarted', async () => {
          await sleep(2_000);
          postgres.restart();
        }),
      );
    } finally {
      await privateWorld.close();
    }
  } finally {
    postgres.stop();
  }
  rmSync(root, { recursive: true, force: true });
  writeResults(results);
}

function writeResults(scenarios: readonly ScenarioResult[]): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const doc = { machine: machine(), measuredAt: new Date().toISOString(), runsPerScenario: RUNS, scenarios };
  writeFileSync(path.join(RESULTS_DIR, 'chaos.json'), JSON.stringify(doc, null, 2) + '\n');
  const rows = scenarios.map((s) => `| ${s.name} | ${s.runs} | ${s.completed} | ${s.compensated} | ${s.duplicates} | ${s.lost} | ${s.crashes} | ${s.recoverySeconds} | ${s.sameKeyRetries} |`);
  const notes = scenarios.filter((s) => s.notes).map((s) => `- ${s.name}: ${s.notes}`);
  writeFileSync(
    path.join(RESULTS_DIR, 'chaos.md'),
    [
      `# Chaos (${doc.measuredAt})`,
      '',
      `Machine: ${doc.machine.cpus} × ${doc.machine.cpuModel}, ${doc.machine.memoryGiB} GiB, Node ${doc.machine.node}. ${RUNS} subscription sagas per scenario.`,
      '',
      '| scenario | runs | completed | compensated | duplicates | lost | crashes | recovery s | same-key retries |',
      '|---|---|---|---|---|---|---|---|---|',
      ...rows,
      '',
      ...notes,
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
