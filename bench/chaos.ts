import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { freeLocalPorts, startLocalServers, type LocalServers } from '../src/stack/local-servers';
import { LEDGERLOCK_BIN, REPO_ROOT } from '../src/stack/paths';
import { freePort } from '../src/stack/process';
import { ensureServers } from '../src/stack/servers';
import { STRIPE_WEBHOOK_PATH } from '../src/webhooks/webhook-routes';
import { signStripePayload } from '../src/webhooks/signature';
import { invoiceEvent } from '../test/support/stripe-events';
import { tokenFor } from '../test/support/tokens';
import { dunningStateQuery, dunningWorkflowId, type DunningView } from '../workflows/dunning-contracts';
import { connectClient } from '../src/temporal/connection';
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
  /** Invoices the run made fail, and the Stripe subscription each belongs to: what real Stripe would answer for them (stripe-mock keeps no state). */
  readonly invoiceOwners: Map<string, string>;
  /** Ledgerlock id (or, for a DELETE, the object's path) + method + endpoint → the distinct idempotency keys Stripe answered 2xx for, with counts. */
  readonly creations: Map<string, Map<string, number>>;
  close(): Promise<void>;
}

/** In front of stripe-mock: answers `faultRate` of requests 429, 500 or with a reset connection, records what succeeded. */
async function startStripeProxy(target: string): Promise<StripeProxy> {
  const upstream = new URL(target);
  const creations = new Map<string, Map<string, number>>();
  const invoiceOwners = new Map<string, string>();
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
        const pathOnly = req.url!.split('?')[0]!;
        // What one saga step changes: an object created for one of our ids, or the object a DELETE names.
        const ours = req.method === 'DELETE' ? pathOnly : (body.get('metadata[ledgerlock_subscription_id]') ?? body.get('metadata[ledgerlock_customer_id]'));
        if ((req.method === 'POST' || req.method === 'DELETE') && typeof key === 'string' && ours && (answer.statusCode ?? 0) < 300) {
          const id = `${ours} ${req.method} ${pathOnly}`;
          const keys = creations.get(id) ?? new Map<string, number>();
          keys.set(key, (keys.get(key) ?? 0) + 1);
          creations.set(id, keys);
        }
        const owner = req.method === 'GET' ? invoiceOwners.get(/^\/v1\/invoices\/(in_[A-Za-z0-9_]+)$/.exec(pathOnly)?.[1] ?? '') : undefined;
        if (!owner) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          return void answer.pipe(res);
        }
        // An open, unpaid invoice of that subscription, as Stripe holds it after a failed renewal.
        const parts: Buffer[] = [];
        answer.on('data', (c: Buffer) => parts.push(c));
        answer.on('end', () => {
          const invoice = JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>;
          const body = JSON.stringify({ ...invoice, id: pathOnly.split('/').at(-1), status: 'open', amount_paid: 0, parent: { type: 'subscription_details', subscription_details: { metadata: {}, subscription: owner } } });
          res.writeHead(200, { 'content-type': 'application/json' }).end(body);
        });
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
    invoiceOwners,
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
  const ports = await freeLocalPorts();
  const { KMS_PORT: kmsPort, STRIPE_MOCK_PORT: stripePort, API_PORT: apiPort, TEMPORAL_PORT: temporalPort } = ports;
  // The dev server keeps all its ports across restarts.
  const temporalPorts = { TEMPORAL_PORT: temporalPort, TEMPORAL_UI_PORT: ports.TEMPORAL_UI_PORT, TEMPORAL_UI_BACKEND_PORT: ports.TEMPORAL_UI_BACKEND_PORT, TEMPORAL_HTTP_PORT: ports.TEMPORAL_HTTP_PORT, TEMPORAL_METRICS_PORT: ports.TEMPORAL_METRICS_PORT };
  // The servers this world runs itself: a dev server (restartable on its port, its SQLite file kept), KMS, stripe-mock.
  const serversConfig = loadConfig({
    ...process.env,
    LEDGERLOCK_DATA_DIR: dataDir,
    LEDGERLOCK_TOOLS_DIR: toolsDir,
    DATABASE_URL: databaseUrl,
    ...temporalPorts,
    KMS_PORT: kmsPort,
    STRIPE_MOCK_PORT: stripePort,
    TEMPORAL_ADDRESS: '',
    KMS_ENDPOINT: '',
    STRIPE_API_URL: '',
    LOG_LEVEL: 'error',
  });
  let servers: LocalServers = await startLocalServers(serversConfig, path.join(dataDir, 'logs'));
  const kmsOnly = loadConfig({ ...process.env, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: toolsDir, DATABASE_URL: databaseUrl, KMS_PORT: kmsPort, KMS_ENDPOINT: '', TEMPORAL_ADDRESS: '127.0.0.1:1', STRIPE_API_URL: 'http://127.0.0.1:1' });
  const temporalOnly = loadConfig({ ...process.env, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: toolsDir, DATABASE_URL: databaseUrl, ...temporalPorts, TEMPORAL_ADDRESS: '', KMS_ENDPOINT: 'http://127.0.0.1:1', STRIPE_API_URL: 'http://127.0.0.1:1' });
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
    API_PORT: apiPort,
    // A free one: a stack running beside the chaos run keeps 9464.
    METRICS_PORT: '0',
    LOG_LEVEL: 'error',
    // Compressed for a bounded run: the relay retries Temporal at most a second apart, and a
    // rotation retires the old keys seconds after promotion.
    STRIPE_WEBHOOK_RETRY_MAX_SECONDS: '1',
    DATA_KEY_CACHE_MAX_AGE_SECONDS: '5',
    // Campaigns retry 5 and 10 s after a failure, twice, then leave the subscription past due.
    DUNNING_POLICY: JSON.stringify({ retryOffsetsSeconds: [5, 10], maxAttempts: 2, gracePeriodSeconds: 3600, finalAction: 'leave_past_due' }),
    KEY_ROTATION_GRACE_SECONDS: '5',
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
    token: await tokenFor(config, 'chaos-billing', ['subscriptions:write', 'subscriptions:read', 'customers:write', 'customers:erase', 'keys:rotate']),
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
  const { duplicates, sameKeyRetries } = stripeRepeats(world, (id) => subscriptionIds.includes(id));
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

/** Stripe changes made twice for one step (distinct keys), and same-key retries, for the ids `mine` accepts. */
function stripeRepeats(world: World, mine: (id: string) => boolean): { duplicates: number; sameKeyRetries: number } {
  let duplicates = 0;
  let sameKeyRetries = 0;
  for (const [id, keys] of world.proxy.creations) {
    if (!mine(id.split(' ')[0]!)) continue;
    duplicates += keys.size - 1;
    for (const count of keys.values()) sameKeyRetries += count - 1;
  }
  return { duplicates, sameKeyRetries };
}

const post = (world: World, route: string, body: unknown, key?: string, method = 'POST', headers: Record<string, string> = {}) =>
  fetch(`${world.api.url}${route}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${world.token}`, ...(key ? { 'idempotency-key': key } : {}), ...headers },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  }).catch(() => undefined);

/** Registers RUNS customers, then erases them all while the worker is SIGKILLed every 5 s: every erasure must finish, once. */
async function erasureScenario(world: World): Promise<ScenarioResult> {
  const name = 'erasure-worker-sigkilled-every-5s';
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes;
  const customers: { customerId: string }[] = [];
  for (let i = 0; i < RUNS; i++) {
    const res = await post(world, '/v1/customers', { email: `erase-${i}@example.com`, name: `Erase ${i}`, country: 'FR' }, `erase-${i}-${randomUUID()}`);
    if (res?.status === 202) customers.push((await res.json()) as { customerId: string });
  }
  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  try {
    const ids = customers.map((c) => c.customerId);
    const stripeIds = async () => (await db.selectFrom('customers').select(['id', 'stripe_customer_id']).where('id', 'in', ids).execute()).filter((r) => r.stripe_customer_id);
    for (let i = 0; i < 240 && (await stripeIds()).length < ids.length; i++) await sleep(500);
    const stripeCustomers = new Set((await stripeIds()).map((r) => `/v1/customers/${r.stripe_customer_id}`));

    let running = true;
    let faultEnded = 0;
    const faulting = killWorkerRepeatedly(world, () => running).finally(() => (faultEnded = Date.now()));
    for (const { customerId } of customers) {
      for (let attempt = 0; attempt < 60; attempt++) {
        const res = await post(world, `/v1/customers/${customerId}`, undefined, undefined, 'DELETE', { 'ledgerlock-purpose': 'chaos erasure' });
        await res?.arrayBuffer();
        if (res?.status === 202 || res?.status === 200) break;
        await sleep(500);
      }
    }
    running = false;
    await faulting;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    let erased = 0;
    for (;;) {
      const keys = await db.selectFrom('data_keys').select(['customer_id', 'status']).where('customer_id', 'in', ids).execute();
      const audits = await db.selectFrom('audit_log').select(['subject_id']).where('action', '=', 'customer.erased').where('subject_id', 'in', ids).execute();
      erased = ids.filter((id) => keys.every((k) => k.customer_id !== id || k.status === 'destroyed') && audits.some((a) => a.subject_id === id)).length;
      if (erased === ids.length || Date.now() > deadline) break;
      await sleep(500);
    }
    const repeats = stripeRepeats(world, (id) => stripeCustomers.has(id));
    return {
      name,
      runs: customers.length,
      completed: erased,
      compensated: 0,
      ...repeats,
      lost: RUNS - erased,
      crashes: world.crashes - crashesBefore,
      recoverySeconds: Math.max(0, Math.round((Date.now() - faultEnded) / 100) / 10),
      notes: 'completed = data keys destroyed and customer.erased audited; duplicates = a Stripe customer deleted under two idempotency keys',
    };
  } finally {
    await db.destroy();
  }
}

/**
 * RUNS / 2 subscriptions made active, then a failed renewal of each (a signed webhook), so
 * each starts a dunning campaign that retries the payment twice on durable timers, while the
 * worker is SIGKILLed every 5 s. Each campaign must make exactly its two attempts, on time or
 * later, never a third: a payment attempt is an `invoices.pay` under its own key.
 */
async function dunningScenario(world: World): Promise<ScenarioResult> {
  const name = 'dunning-worker-sigkilled-every-5s';
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes;
  const count = Math.max(1, Math.floor(RUNS / 2));
  const subscriptionIds: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await post(world, '/v1/subscriptions', { customer: { email: `dun-${i}@example.com`, name: `Dun ${i}`, country: 'NL' }, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }, `dun-${i}-${randomUUID()}`);
    if (res?.status === 202) subscriptionIds.push(((await res.json()) as { subscriptionId: string }).subscriptionId);
  }
  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  const client = await connectClient(world.config, world.apiServices.dataConverter);
  try {
    const active = async () => db.selectFrom('subscriptions').select(['id', 'status', 'stripe_subscription_id']).where('id', 'in', subscriptionIds).where('status', '=', 'active').execute();
    for (let i = 0; i < 240 && (await active()).length < subscriptionIds.length; i++) await sleep(500);
    const campaigns: { subscriptionId: string; invoiceId: string }[] = [];
    for (const row of await active()) {
      const invoiceId = `in_chaosdun${randomUUID().replace(/-/g, '').slice(0, 16)}`;
      world.proxy.invoiceOwners.set(invoiceId, row.stripe_subscription_id!);
      const body = JSON.stringify(invoiceEvent({ type: 'invoice.payment_failed', subscriptionId: row.id, invoiceId }));
      for (let attempt = 0; attempt < 60; attempt++) {
        const res = await fetch(`${world.api.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signStripePayload(body, [WEBHOOK_SECRET]) }, body }).catch(() => undefined);
        await res?.arrayBuffer();
        if (res?.status === 200) break;
        await sleep(500);
      }
      campaigns.push({ subscriptionId: row.id, invoiceId });
    }
    let running = true;
    let faultEnded = 0;
    const faulting = killWorkerRepeatedly(world, () => running).finally(() => (faultEnded = Date.now()));
    await sleep(25_000);
    running = false;
    await faulting;
    const attemptsOf = async (c: { subscriptionId: string; invoiceId: string }) => {
      try {
        const view: DunningView = await client.workflow.getHandle(dunningWorkflowId(c.subscriptionId, c.invoiceId)).query(dunningStateQuery);
        return view.history.length;
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    let attempts: number[] = [];
    for (;;) {
      attempts = await Promise.all(campaigns.map(attemptsOf));
      if (attempts.every((n) => n >= 2) || Date.now() > deadline) break;
      await sleep(1_000);
    }
    // Payment attempts Stripe executed, per invoice: one per distinct idempotency key.
    const payKeys = new Map<string, Set<string>>();
    for (const [id, keys] of world.proxy.creations) {
      const match = / POST \/v1\/invoices\/(in_chaosdun[A-Za-z0-9]+)\/pay$/.exec(id);
      if (match) payKeys.set(match[1]!, new Set([...(payKeys.get(match[1]!) ?? []), ...keys.keys()]));
    }
    const duplicates = campaigns.reduce((sum, c) => sum + Math.max(0, (payKeys.get(c.invoiceId)?.size ?? 0) - 2), 0);
    let sameKeyRetries = 0;
    for (const [id, keys] of world.proxy.creations) if (id.includes('/v1/invoices/in_chaosdun')) for (const n of keys.values()) sameKeyRetries += n - 1;
    const completed = attempts.filter((n) => n === 2).length;
    return {
      name,
      runs: campaigns.length,
      completed,
      compensated: 0,
      duplicates,
      lost: count - completed,
      crashes: world.crashes - crashesBefore,
      recoverySeconds: Math.max(0, Math.round((Date.now() - faultEnded) / 100) / 10),
      sameKeyRetries,
      notes: 'completed = the campaign made exactly its two payment attempts; duplicates = payment attempts beyond the policy\'s two',
    };
  } finally {
    await client.connection.close();
    await db.destroy();
  }
}

/** One key rotation over every data key made so far, while the worker is SIGKILLed every 5 s: it must complete (re-wrap resumed from its cursor), never undo itself for an outage. */
async function rotationScenario(world: World): Promise<ScenarioResult> {
  const name = 'key-rotation-worker-sigkilled-every-5s';
  process.stdout.write(`chaos: ${name} ...\n`);
  const crashesBefore = world.crashes;
  let rotationId: string | undefined;
  for (let attempt = 0; attempt < 60 && !rotationId; attempt++) {
    const res = await post(world, '/v1/key-rotations', {});
    if (res?.status === 202) rotationId = ((await res.json()) as { rotationId: string }).rotationId;
    else await sleep(1_000);
  }
  let running = true;
  let faultEnded = 0;
  const faulting = killWorkerRepeatedly(world, () => running).finally(() => (faultEnded = Date.now()));
  const db = createDb(ownerDatabaseUrl(world.config), { max: 1 });
  let status = 'running';
  try {
    const faultUntil = Date.now() + 30_000;
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      status = (await db.selectFrom('key_rotations').select('status').where('id', '=', rotationId ?? '').executeTakeFirst().catch(() => undefined))?.status ?? status;
      if (Date.now() > faultUntil) running = false;
      if (status !== 'running') break;
      await sleep(500);
    }
    running = false;
    await faulting;
  } finally {
    await db.destroy();
  }
  return {
    name,
    runs: rotationId ? 1 : 0,
    completed: status === 'completed' ? 1 : 0,
    compensated: status === 'failed' ? 1 : 0,
    duplicates: 0,
    lost: status === 'running' || !rotationId ? 1 : 0,
    crashes: world.crashes - crashesBefore,
    recoverySeconds: Math.max(0, Math.round((Date.now() - faultEnded) / 100) / 10),
    sameKeyRetries: 0,
    notes: 'one rotation (they run one at a time) over every data key of the run, with a 5 s grace period; completed = retired the old keys',
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

/** The scenarios on the shared PostgreSQL, in the order they run. */
const SHARED: Record<string, (world: World) => Promise<ScenarioResult>> = {
  'worker-sigkilled-every-5s': (w) => sagaScenario(w, 'worker-sigkilled-every-5s', killWorkerRepeatedly),
  'postgres-connections-terminated-every-2s': (w) => sagaScenario(w, 'postgres-connections-terminated-every-2s', terminateBackends(ownerDatabaseUrl(w.config))),
  'temporal-restarted': (w) =>
    sagaScenario(w, 'temporal-restarted', async (world) => {
      await sleep(2_000);
      await world.restartTemporal();
    }),
  'kms-stopped-20s': (w) =>
    sagaScenario(
      w,
      'kms-stopped-20s',
      async (world) => {
        await world.stopKms();
        await sleep(20_000);
        await world.startKms();
      },
      { faultFirst: true, notes: 'the API refuses new sagas with 503 kms while KMS is down (they need a data key); clients retry with the same Idempotency-Key' },
    ),
  'stripe-10pct-429-500-reset': (w) =>
    sagaScenario(w, 'stripe-10pct-429-500-reset', async (world, running) => {
      world.proxy.faultRate = 0.1;
      while (running()) await sleep(250);
      world.proxy.faultRate = 0;
    }),
  'dunning-worker-sigkilled-every-5s': dunningScenario,
  'erasure-worker-sigkilled-every-5s': erasureScenario,
  'key-rotation-worker-sigkilled-every-5s': rotationScenario,
  'webhooks-30pct-duplicates-api-restart': webhookScenario,
};
const PRIVATE_POSTGRES = 'postgres-restarted';

/** `npm run chaos [scenario ...]`: all of them, or those named; results of scenarios not run are kept from the last run. */
async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const known = [...Object.keys(SHARED), PRIVATE_POSTGRES];
  const unknown = wanted.filter((name) => !known.includes(name));
  if (unknown.length) throw new Error(`unknown scenario(s): ${unknown.join(', ')}; known: ${known.join(', ')}`);
  const runs = (name: string) => wanted.length === 0 || wanted.includes(name);
  const toolsDir = process.env.LEDGERLOCK_TOOLS_DIR ?? path.join(REPO_ROOT, '.tools');
  await ensureServers(toolsDir);
  const root = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-chaos-'));
  // The private PostgreSQL runs as the postgres user, who must reach its folder below this one.
  chmodSync(root, 0o755);
  const results: ScenarioResult[] = [];
  // Written after every scenario: a later one that fails keeps what the earlier ones measured.
  const record = (result: ScenarioResult) => {
    results.push(result);
    writeResults(results, known);
  };
  const shared = Object.keys(SHARED).filter(runs);
  if (shared.length) {
    const baseUrl = new URL(process.env.BENCH_DATABASE_URL ?? 'postgres://127.0.0.1:5432/postgres');
    baseUrl.pathname = `/ledgerlock_chaos_${process.pid}`;
    const world = await buildWorld(path.join(root, 'shared'), toolsDir, baseUrl.toString());
    try {
      for (const name of shared) record(await SHARED[name]!(world));
    } finally {
      await world.close();
      await dropDatabase(baseUrl.toString()).catch(() => undefined);
    }
  }
  if (runs(PRIVATE_POSTGRES)) {
    // A real PostgreSQL restart, on a private instance: the shared one is never touched.
    const privateDir = path.join(root, 'private');
    mkdirSync(privateDir, { recursive: true });
    const postgres = await startPrivatePostgres(privateDir);
    try {
      const privateWorld = await buildWorld(path.join(root, 'private-world'), toolsDir, postgres.url);
      try {
        record(
          await sagaScenario(privateWorld, PRIVATE_POSTGRES, async () => {
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
  }
  rmSync(root, { recursive: true, force: true });
}

function writeResults(fresh: readonly ScenarioResult[], order: readonly string[]): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, 'chaos.json');
  const previous: ScenarioResult[] = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { scenarios: ScenarioResult[] }).scenarios : [];
  const byName = new Map([...previous, ...fresh].map((r) => [r.name, r]));
  const scenarios = order.flatMap((name) => (byName.has(name) ? [byName.get(name)!] : []));
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
  process.stdout.write(`${rows.at(-1)}\n`);
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
