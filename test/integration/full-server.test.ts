import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startKeyRotation } from '../../src/keys/key-rotation-service';
import { freePort } from '../../src/stack/process';
import { Connection } from '@temporalio/client';
import { dropDatabase } from '../../src/db/database';
import { freeLocalPorts } from '../../src/stack/local-servers';
import { freeRecordablePort, startTemporalServer, temporalDatabaseNames, type TemporalServer } from '../../src/stack/temporal-server';
import { connectClient } from '../../src/temporal/connection';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import type { RotationProgress } from '../../workflows/key-rotation-contracts';
import { subscriptionStateQuery, subscriptionWorkflowId } from '../../workflows/subscription-contracts';
import { startRecordingProxy } from '../support/recording-proxy';
import { rotationWorld, type RotationWorld } from '../support/rotation-stack';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { testStack } from '../support/stack';
import { invoiceEvent, signedHeaders, TEST_WEBHOOK_SECRET } from '../support/stripe-events';
import { tokenFor } from '../support/tokens';

/**
 * The production topology, here: the full Temporal server (not the dev server) on
 * PostgreSQL, in databases of its own, its schema, namespace and search attributes set up
 * by the scripts docker-compose runs; two `ledgerlock worker` processes and a `ledgerlock api`
 * process against it. A subscription goes active, a failed renewal webhook starts dunning,
 * a saga survives the SIGKILL of the worker running its Stripe call, a rotation promotes
 * new master keys and a customer is erased; then a `pg_dump` of Temporal's databases holds
 * no probe email. The databases are dropped at the end.
 */
describe('the full Temporal server on PostgreSQL, with two workers and the API as processes', () => {
  const probe = `full-server-probe-${randomUUID()}@example.com`;
  const erasedProbe = `full-server-erased-${randomUUID()}@example.com`;
  let dir: string;
  let temporal: TemporalServer | undefined;
  let world: RotationWorld;
  let client: Client;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let api: SpawnedCli;
  let apiUrl: string;
  const workers: SpawnedCli[] = [];
  let env: Record<string, string>;
  let token: string;
  let stripeSubscriptionId: string | undefined;
  const subscriptionIds: string[] = [];

  const startWorker = async () => {
    const worker = spawnCli(['worker'], { ...env, LOG_LEVEL: 'info' });
    await worker.waitFor('worker polling', 90_000);
    workers.push(worker);
    return worker;
  };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-full-server-'));
    temporal = await startTemporalServer({
      databaseUrl: testStack().databaseUrl,
      suffix: `test_${process.pid}_${Date.now().toString(36)}`,
      namespace: 'default',
      toolsDir: testStack().toolsDir,
      dir,
    });
    // As in dunning-worker-kill.test.ts: stripe-mock keeps no state, so the proxy answers for
    // every invoice what Stripe would hold, an open one of our subscription.
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    proxy.rewriteAnswers(
      (method, p) => method === 'GET' && /^\/v1\/invoices\/in_[A-Za-z0-9_]+$/.test(p),
      (invoice) => ({ ...invoice, parent: { type: 'subscription_details', subscription_details: { metadata: {}, subscription: stripeSubscriptionId } }, status: 'open', amount_paid: 0 }),
    );
    const apiPort = await freePort();
    world = await rotationWorld('fullserver', 20, {
      TEMPORAL_ADDRESS: temporal.address,
      STRIPE_API_URL: proxy.url,
      STRIPE_WEBHOOK_SECRET: TEST_WEBHOOK_SECRET,
      API_PORT: String(apiPort),
      DUNNING_POLICY: JSON.stringify({ retryOffsetsSeconds: [3600], gracePeriodSeconds: 3600, finalAction: 'leave_past_due' }),
    });
    env = world.env;
    api = spawnCli(['api'], { ...env, LOG_LEVEL: 'info' });
    await Promise.all([api.waitFor('api listening', 90_000), startWorker(), startWorker()]);
    apiUrl = `http://127.0.0.1:${apiPort}`;
    client = await connectClient(world.config, world.services.dataConverter);
    token = await tokenFor(world.config, 'svc-billing', ['subscriptions:write', 'subscriptions:read', 'customers:write', 'customers:erase']);
  }, 300_000);

  afterAll(async () => {
    for (const child of [...workers, api]) {
      if (child && child.child.exitCode === null && child.child.signalCode === null) {
        child.child.kill('SIGTERM');
        await child.exited;
      }
    }
    for (const id of subscriptionIds) await client?.workflow.getHandle(subscriptionWorkflowId(id)).terminate('test over').catch(() => undefined);
    await client?.connection.close();
    await world?.close();
    await proxy?.close();
    await temporal?.destroy();
    const left = spawnSync('psql', ['--dbname', testStack().databaseUrl, '-tAc', `select count(*) from pg_database where datname in ('${temporalNames().join("','")}')`], { encoding: 'utf8' });
    if (left.stdout.trim() !== '0') console.error('full-server: Temporal databases left behind', left.stdout, left.stderr);
    rmSync(dir, { recursive: true, force: true });
  }, 120_000);

  const temporalNames = () => (temporal ? Object.values(temporal.databases).map((url) => new URL(url).pathname.slice(1)) : []);
  const headers = (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json', ...extra });
  const createSubscription = async (email: string) => {
    const res = await fetch(`${apiUrl}/v1/subscriptions`, {
      method: 'POST',
      headers: headers({ 'idempotency-key': `full-${randomUUID()}` }),
      body: JSON.stringify({ customer: { email, name: 'Full Server', country: 'NL' }, priceId: 'price_basic', paymentMethodId: 'pm_card_visa' }),
    });
    expect(res.status).toBe(202);
    const { subscriptionId } = (await res.json()) as { subscriptionId: string };
    subscriptionIds.push(subscriptionId);
    return subscriptionId;
  };
  const untilActive = (subscriptionId: string) =>
    vi.waitFor(
      async () => {
        const res = await fetch(`${apiUrl}/v1/subscriptions/${subscriptionId}`, { headers: headers() });
        const body = (await res.json()) as { status: string; customerId: string; stripeSubscriptionId: string };
        expect(body.status).toBe('active');
        return body;
      },
      { timeout: 60_000, interval: 250 },
    );

  it('runs on the full server, not a dev server: the namespace and every search attribute registered on PostgreSQL', async () => {
    const info = await client.connection.workflowService.getSystemInfo({});
    expect(info.serverVersion).toBe('1.29.1');
    const { customAttributes } = await client.connection.operatorService.listSearchAttributes({ namespace: 'default' });
    expect(Object.keys(customAttributes ?? {})).toEqual(expect.arrayContaining(['CustomerId', 'SubscriptionId', 'BillingStatus', 'SagaStep', 'DunningAttempt', 'DunningState']));
    const tables = spawnSync('psql', ['--dbname', temporal!.databases.persistence, '-tAc', 'select count(*) from executions'], { encoding: 'utf8' });
    expect(tables.status, tables.stderr).toBe(0);
  });

  it('takes a subscription to active, and a failed renewal by webhook into dunning', async () => {
    const subscriptionId = await createSubscription(probe);
    const active = await untilActive(subscriptionId);
    stripeSubscriptionId = active.stripeSubscriptionId;

    const body = JSON.stringify(invoiceEvent({ type: 'invoice.payment_failed', subscriptionId, invoiceId: 'in_fullserver1' }));
    expect((await fetch(`${apiUrl}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: signedHeaders(body), body })).status).toBe(200);
    const subscription = client.workflow.getHandle(subscriptionWorkflowId(subscriptionId));
    await vi.waitFor(
      async () => {
        const view = await subscription.query(subscriptionStateQuery);
        expect(view.dunning.find((d) => d.invoiceId === 'in_fullserver1')).toMatchObject({ state: 'retrying', attempt: 1 });
      },
      { timeout: 45_000, interval: 250 },
    );
    // Visibility on PostgreSQL answers the search attributes the workflows set.
    await vi.waitFor(
      async () => {
        const found: string[] = [];
        for await (const execution of client.workflow.list({ query: `SubscriptionId = '${subscriptionId}' AND DunningState IS NOT NULL` })) found.push(execution.workflowId);
        expect(found.length).toBeGreaterThan(0);
      },
      { timeout: 20_000, interval: 500 },
    );
  }, 120_000);

  it('completes a saga exactly once when the worker running its Stripe call is SIGKILLed', async () => {
    proxy.holdNext((method, p) => method === 'POST' && p === '/v1/subscriptions', 15_000);
    const subscriptionId = await createSubscription(`full-kill-${randomUUID()}@example.com`);
    const keyPrefix = `subscription:${subscriptionId}:`;
    await vi.waitFor(() => expect(proxy.held.some((r) => r.idempotencyKey?.startsWith(keyPrefix))).toBe(true), { timeout: 30_000, interval: 100 });

    // The worker whose activity waits on Stripe, by the identity (pid@host) Temporal recorded.
    const identity = await vi.waitFor(
      async () => {
        const { raw } = await client.workflow.getHandle(subscriptionWorkflowId(subscriptionId)).describe();
        const pending = (raw.pendingActivities ?? []).find((a) => a.lastWorkerIdentity);
        expect(pending?.lastWorkerIdentity).toBeTruthy();
        return pending!.lastWorkerIdentity!;
      },
      { timeout: 10_000, interval: 100 },
    );
    const victim = workers.find((w) => identity.startsWith(`${w.child.pid}@`));
    expect(victim, `no worker process is ${identity}`).toBeDefined();
    victim!.child.kill('SIGKILL');
    await victim!.exited;
    workers.splice(workers.indexOf(victim!), 1);
    // The other worker takes the retried activity over; a replacement keeps two running.
    await startWorker();

    await untilActive(subscriptionId);
    await vi.waitFor(() => expect(proxy.abandoned.some((r) => r.idempotencyKey?.startsWith(keyPrefix))).toBe(true), { timeout: 20_000 });
    const keys = proxy.requests.filter((r) => r.idempotencyKey?.startsWith(keyPrefix)).map((r) => r.idempotencyKey);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.filter((k) => k === `${keyPrefix}create-stripe-subscription`)).toHaveLength(1);
    const entitlements = await world.owner.selectFrom('entitlements').selectAll().where('subscription_id', '=', subscriptionId).execute();
    expect(entitlements).toHaveLength(1);
  }, 150_000);

  it('rotates the master keys through to promotion', async () => {
    const before = new Map(await Promise.all(world.aliases().map(async (alias) => [alias, await world.aliasTarget(alias)] as const)));
    const rotationId = await startKeyRotation(client, world.services.db, world.config, 'svc-security');
    const result = (await client.workflow.getHandle(rotationId).result()) as RotationProgress;
    expect(result.stage).toBe('completed');
    for (const target of result.targets) {
      expect(target.promoted).toBe(true);
      expect(target.newKeyId).not.toBe(before.get(target.alias));
      expect(await world.aliasTarget(target.alias)).toBe(target.newKeyId);
    }
    expect(await world.decryptable()).toBe(20);
  }, 180_000);

  it('erases a customer', async () => {
    const created = await fetch(`${apiUrl}/v1/customers`, {
      method: 'POST',
      headers: headers({ 'idempotency-key': `full-${randomUUID()}` }),
      body: JSON.stringify({ email: erasedProbe, name: 'Era Sed', country: 'FR' }),
    });
    expect(created.status).toBe(202);
    const { customerId, workflowId: registration } = (await created.json()) as { customerId: string; workflowId: string };
    await client.workflow.getHandle(registration).result();
    const erase = await fetch(`${apiUrl}/v1/customers/${customerId}`, { method: 'DELETE', headers: headers({ 'ledgerlock-purpose': 'GDPR art. 17 full-server test' }) });
    expect(erase.status).toBe(202);
    const { workflowId } = (await erase.json()) as { workflowId: string };
    expect(await client.workflow.getHandle(workflowId).result()).toEqual({ dataKeysDestroyed: 1, stripeCustomerDeleted: true });
    const row = await world.owner.selectFrom('customers').select('status').where('id', '=', customerId).executeTakeFirstOrThrow();
    expect(row.status).toBe('erased');
  }, 120_000);

  it('leaves no probe email in a pg_dump of Temporal\'s databases', () => {
    const dumps = Object.values(temporal!.databases).map((url) => {
      const dump = spawnSync('pg_dump', ['--dbname', url, '--data-only'], { encoding: 'utf8', maxBuffer: 1 << 30 });
      expect(dump.status, dump.stderr).toBe(0);
      return dump.stdout;
    });
    const all = dumps.join('\n');
    // Histories are bytea, dumped as hex: what is in them shows as hex. The workflows' ids
    // (in search attributes, never encrypted) do, so the dump is one to find an email in.
    const hex = (text: string) => Buffer.from(text).toString('hex');
    for (const id of subscriptionIds) {
      expect(all).toContain(id);
      expect(all).toContain(hex(id));
    }
    for (const email of [probe, erasedProbe]) {
      expect(all).not.toContain(email);
      expect(all).not.toContain(hex(email));
    }
    for (const worker of workers) expect(worker.stdout()).not.toContain(probe);
  });
});

describe('npm start with LEDGERLOCK_TEMPORAL=server', () => {
  it('runs the full server on PostgreSQL instead of the dev server, and starts again on the databases it left', async () => {
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-start-server-'));
    const url = new URL(testStack().databaseUrl);
    const database = `${url.pathname.slice(1)}_srv_${Date.now().toString(36)}`;
    url.pathname = `/${database}`;
    const names = temporalDatabaseNames(database);
    const withDb = (name: string) => Object.assign(new URL(url), { pathname: `/${name}` }).toString();
    const ports = { ...(await freeLocalPorts()), TEMPORAL_PORT: String(await freeRecordablePort()) };
    const env = { ...ports, LEDGERLOCK_TEMPORAL: 'server', LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: testStack().toolsDir, DATABASE_URL: url.toString() };
    const started: SpawnedCli[] = [];
    try {
      for (const round of [1, 2]) {
        const stack = spawnCli(['start'], env);
        started.push(stack);
        await stack.waitFor('Ledgerlock is ready', 120_000);
        expect(stack.stdout()).toContain(`full server on PostgreSQL, databases ${names.persistence} and ${names.visibility}`);
        const run = JSON.parse(readFileSync(path.join(dataDir, 'run.json'), 'utf8')) as { servers: { name: string }[] };
        expect(run.servers.map((s) => s.name).sort()).toEqual(['local-kms', 'stripe-mock', 'temporal-server']);
        const connection = await Connection.connect({ address: `127.0.0.1:${ports.TEMPORAL_PORT}` });
        try {
          expect((await connection.workflowService.getSystemInfo({})).serverVersion).toBe('1.29.1');
          // The worker runs on it: the key rotation schedule was created there.
          await connection.workflowService.describeSchedule({ namespace: 'default', scheduleId: 'key-rotation' });
        } finally {
          await connection.close();
        }
        expect((await fetch(`http://127.0.0.1:${ports.API_PORT}/readyz`)).status, `round ${round}`).toBe(200);
        expect(await (await fetch(`http://127.0.0.1:${ports.TEMPORAL_METRICS_PORT}/metrics`)).text()).toContain('# TYPE');
        stack.child.kill('SIGTERM');
        expect(await stack.exited).toBe(0);
      }
    } finally {
      for (const stack of started) stack.child.kill('SIGKILL');
      for (const name of [database, names.persistence, names.visibility]) await dropDatabase(withDb(name));
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 300_000);
});
