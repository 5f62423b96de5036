import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listAuditEntries, verifyAuditChain } from '../../src/audit/audit-dal';
import { DataKeyDestroyedError } from '../../src/crypto/errors';
import { createDb, type Db } from '../../src/db/database';
import { createLogger } from '../../src/log';
import type { RunningServer } from '../../src/runtime';
import type { Services } from '../../src/services';
import { connectClient } from '../../src/temporal/connection';
import { runWorkersUntil } from '../../src/worker/worker';
import { Envelope } from '../../src/crypto/envelope';
import { cell } from '../../src/customers/customer-crypto';
import type { SealedCustomer } from '../../src/customers/customer-types';
import { startRecordingProxy } from '../support/recording-proxy';
import { createTestWorkers, startTestApi } from '../support/runtime';
import { testConfig, testStack } from '../support/stack';
import { tokenFor } from '../support/tokens';

const probe = `e2ee-probe-${randomUUID()}@example.com`;

describe('customers: registration, audited reads and erasure, end to end', () => {
  const logLines: string[] = [];
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let api: RunningServer & { services: Services };
  let client: Client;
  let db: Db;
  let stopWorkers: () => void;
  let workersDone: Promise<unknown>;
  let closeWorkers: () => Promise<void>;
  let writer: string;
  let reader: string;
  let eraser: string;
  let exporter: string;
  const config = () => testConfig({ STRIPE_API_URL: proxy.url, TEMPORAL_TASK_QUEUE: `customers-${process.pid}`, LOG_LEVEL: 'debug' });

  beforeAll(async () => {
    proxy = await startRecordingProxy(testStack().stripeApiUrl);
    const cfg = config();
    const log = createLogger('debug', {}, (line) => logLines.push(line));
    api = await startTestApi(cfg, log);
    const workers = await createTestWorkers(cfg);
    closeWorkers = workers.close;
    workersDone = runWorkersUntil(workers.workers, new Promise<void>((resolve) => (stopWorkers = resolve)));
    client = await connectClient(cfg, api.services.dataConverter);
    db = createDb(cfg.databaseUrl!, { max: 2 });
    writer = await tokenFor(cfg, 'svc-signup', ['customers:write']);
    reader = await tokenFor(cfg, 'svc-support', ['customers:read']);
    eraser = await tokenFor(cfg, 'svc-privacy', ['customers:erase']);
    exporter = await tokenFor(cfg, 'svc-dpo', ['customers:export']);
  });
  afterAll(async () => {
    stopWorkers?.();
    await workersDone;
    await closeWorkers?.();
    await client?.connection.close();
    await api?.stop();
    await db?.destroy();
    await proxy?.close();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${api.url}/v1/customers`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const get = (id: string, token = reader, purpose = 'support ticket 4711') =>
    fetch(`${api.url}/v1/customers/${id}`, { headers: { authorization: `Bearer ${token}`, ...(purpose ? { 'ledgerlock-purpose': purpose } : {}) } });
  const exportOf = (id: string, token = exporter) =>
    fetch(`${api.url}/v1/customers/${id}/export`, { headers: { authorization: `Bearer ${token}`, 'ledgerlock-purpose': 'GDPR art. 15 request 98' } });
  const profile = { email: probe, name: 'Ada Probe', country: 'de', address: { line1: 'Unter den Linden 1', city: 'Berlin', postalCode: '10117' }, phone: '+4915112345678' };

  let customerId: string;
  let registration: WorkflowHandle;

  it('registers a customer through the saga, answering 202 with where to find them', async () => {
    const res = await post(profile, { authorization: `Bearer ${writer}`, 'idempotency-key': 'signup-1' });
    expect(res.status).toBe(202);
    const body = (await res.json()) as { customerId: string; workflowId: string; status: string };
    expect(body.status).toBe('registering');
    expect(res.headers.get('location')).toBe(`/v1/customers/${body.customerId}`);
    customerId = body.customerId;
    registration = client.workflow.getHandle(body.workflowId);
    const result = (await registration.result()) as { stripeCustomerId: string };
    expect(result.stripeCustomerId).toMatch(/^cus_/);
  });

  it('sends Stripe only the shared fields and our opaque id, once, with the saga idempotency key', async () => {
    const creates = proxy.requests.filter((r) => r.method === 'POST' && r.path === '/v1/customers');
    expect(creates).toHaveLength(1);
    const sent = creates[0]!;
    expect(sent.body.get('email')).toBe(probe);
    expect(sent.body.get('name')).toBe('Ada Probe');
    expect(sent.body.get('metadata[ledgerlock_customer_id]')).toBe(customerId);
    expect([...sent.body.keys()].some((k) => k.startsWith('address') || k === 'phone')).toBe(false);
    expect(sent.idempotencyKey).toBe(`${registration.workflowId}:create-stripe-customer`);
  });

  it('stores personal data only as ciphertext, EU-resident for a German customer', async () => {
    const row = await db.selectFrom('customers').selectAll().where('id', '=', customerId).executeTakeFirstOrThrow();
    expect(row.region).toBe('eu');
    for (const column of ['email', 'name', 'address', 'phone'] as const) {
      expect(row[column]).toBeInstanceOf(Buffer);
      expect(row[column]!.includes(Buffer.from('Probe'))).toBe(false);
      expect(row[column]!.includes(Buffer.from('Berlin'))).toBe(false);
    }
    const key = await db.selectFrom('data_keys').selectAll().where('customer_id', '=', customerId).executeTakeFirstOrThrow();
    expect(key.kms_key_id).toContain(':key/');
  });

  it('returns the decrypted profile to an authorised caller, auditing who read it and why', async () => {
    const res = await get(customerId);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toMatchObject({ id: customerId, email: probe, name: 'Ada Probe', country: 'DE', phone: '+4915112345678' });
    const reads = (await listAuditEntries(db, { limit: 500 })).filter((e) => e.action === 'customer.read' && e.subjectId === customerId);
    expect(reads).toHaveLength(1);
    expect(reads[0]).toMatchObject({ actor: 'svc-support', purpose: 'support ticket 4711' });
  });

  it('audits the saga steps and the export to Stripe, without personal data, on an intact chain', async () => {
    const entries = (await listAuditEntries(db, { limit: 500 })).filter((e) => e.subjectId === customerId);
    expect(entries.map((e) => `${e.action}:${e.details.step ?? e.details.recipient ?? ''}`)).toEqual([
      'saga.step:store customer',
      'customer.export:stripe',
      'saga.step:create Stripe customer',
      'customer.read:',
    ]);
    expect(JSON.stringify(entries)).not.toContain(probe);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true });
  });

  it('audits every read on its own, whatever X-Request-Id the caller sends, keeping it as a detail', async () => {
    const readsOf = async () => (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'customer.read' && e.subjectId === customerId);
    const before = (await readsOf()).length;
    const requestId = `req-${randomUUID()}`;
    const read = (purpose: string) =>
      fetch(`${api.url}/v1/customers/${customerId}`, { headers: { authorization: `Bearer ${reader}`, 'ledgerlock-purpose': purpose, 'x-request-id': requestId } });
    for (const purpose of ['support ticket 1', 'support ticket 2', 'support ticket 2']) {
      const res = await read(purpose);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ email: probe });
    }
    const reads = (await readsOf()).slice(before);
    expect(reads.map((r) => [r.purpose, r.details.requestId])).toEqual([
      ['support ticket 1', requestId],
      ['support ticket 2', requestId],
      ['support ticket 2', requestId],
    ]);
    expect(new Set(reads.map((r) => r.idempotencyKey)).size).toBe(3);
    for (const r of reads) expect(r.idempotencyKey).not.toContain(requestId);

    const refused = await fetch(`${api.url}/v1/customers/${customerId}`, {
      headers: { authorization: `Bearer ${reader}`, 'ledgerlock-purpose': 'support ticket 3', 'x-request-id': 'ada@example.com' },
    });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('content-type')).toContain('application/problem+json');
    expect(await refused.json()).toMatchObject({ errors: [{ field: 'header.X-Request-Id' }] });
    expect((await readsOf()).length).toBe(before + 3);
  });

  it('serves a reader whose token sub is an email, auditing a pseudonym instead of the email', async () => {
    const personal = `reader-${randomUUID().slice(0, 8)}@example.com`;
    const res = await get(customerId, await tokenFor(config(), personal, ['customers:read']), 'support ticket 5');
    expect(res.status).toBe(200);
    const read = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'customer.read' && e.subjectId === customerId).at(-1)!;
    expect(read).toMatchObject({ purpose: 'support ticket 5', actor: expect.stringMatching(/^pseudonym:[0-9a-f]{32}$/) });
    expect(JSON.stringify(await listAuditEntries(db, { limit: 1000 }))).not.toContain(personal);
  });

  it('keeps the probe out of the Temporal server database and out of the logs', async () => {
    const files = [testStack().temporalDbFile, `${testStack().temporalDbFile}-wal`].filter(existsSync);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect(readFileSync(file).includes(Buffer.from(probe)), file).toBe(false);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('\n')).not.toContain(probe);
  });

  it('refuses reads without a token (401), without the scope (403) or without a purpose (400)', async () => {
    expect((await fetch(`${api.url}/v1/customers/${customerId}`)).status).toBe(401);
    expect((await get(customerId, writer)).status).toBe(403);
    const noPurpose = await get(customerId, reader, '');
    expect(noPurpose.status).toBe(400);
    expect(JSON.stringify(await noPurpose.json())).toContain('header.Ledgerlock-Purpose');
  });

  it('answers a retried POST with the same customer and saga, and a reused key with another body with 409', async () => {
    const again = await post(profile, { authorization: `Bearer ${writer}`, 'idempotency-key': 'signup-1' });
    expect(again.status).toBe(202);
    expect(((await again.json()) as { customerId: string }).customerId).toBe(customerId);
    const changed = await post({ ...profile, name: 'Someone Else' }, { authorization: `Bearer ${writer}`, 'idempotency-key': 'signup-1' });
    expect(changed.status).toBe(409);
    expect(proxy.requests.filter((r) => r.method === 'POST' && r.path === '/v1/customers')).toHaveLength(1);
  });

  it('rejects bad input with a problem naming each field, and without an Idempotency-Key', async () => {
    const bad = await post({ email: 'not-an-email', name: '', country: 'Germany', card: '4242424242424242' }, {
      authorization: `Bearer ${writer}`,
      'idempotency-key': 'signup-bad',
    });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toMatch(/problem\+json/);
    const fields = ((await bad.json()) as { errors: { field: string }[] }).errors.map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['body.email', 'body.name', 'body.country', 'body']));
    const noKey = await post(profile, { authorization: `Bearer ${writer}` });
    expect(noKey.status).toBe(400);
    expect(JSON.stringify(await noKey.json())).toContain('header.Idempotency-Key');
  });

  it('exports everything held about the customer to a caller with customers:export, auditing the export in it', async () => {
    expect((await exportOf(customerId, reader)).status).toBe(403);
    const res = await exportOf(customerId);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('content-disposition')).toContain('attachment');
    const document = (await res.json()) as { customer: { profile: { email: string }; stripeCustomerId: string }; accessLog: { action: string; actor: string; purpose: string | null }[] };
    expect(document.customer).toMatchObject({ id: customerId, status: 'active', region: 'eu', profile: { email: probe, phone: '+4915112345678' } });
    expect(document.customer.stripeCustomerId).toMatch(/^cus_/);
    const actions = document.accessLog.map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['saga.step', 'customer.export', 'customer.read', 'customer.subject_access_export']));
    expect(document.accessLog.at(-1)).toMatchObject({ action: 'customer.subject_access_export', actor: 'svc-dpo', purpose: 'GDPR art. 15 request 98' });
    const exports = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'customer.subject_access_export' && e.subjectId === customerId);
    expect(exports).toHaveLength(1);
    expect(JSON.stringify(exports)).not.toContain(probe);
  });

  it('erases a customer: keys destroyed, Stripe customer deleted, every ciphertext unreadable, others unaffected', async () => {
    const other = await post({ email: 'bystander@example.com', name: 'By Stander', country: 'US' }, {
      authorization: `Bearer ${writer}`,
      'idempotency-key': 'signup-2',
    });
    const otherId = ((await other.json()) as { customerId: string; workflowId: string });
    await client.workflow.getHandle(otherId.workflowId).result();

    const erase = await fetch(`${api.url}/v1/customers/${customerId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${eraser}`, 'ledgerlock-purpose': 'GDPR art. 17 request 99' },
    });
    expect(erase.status).toBe(202);
    const { workflowId } = (await erase.json()) as { workflowId: string };
    expect(await client.workflow.getHandle(workflowId).result()).toEqual({ dataKeysDestroyed: 1, stripeCustomerDeleted: true });

    expect((await get(customerId)).status).toBe(410);
    const exported = await exportOf(customerId);
    expect(exported.status).toBe(410);
    expect(JSON.stringify(await exported.json())).not.toContain(probe);
    expect(proxy.requests.some((r) => r.method === 'DELETE' && r.path.startsWith('/v1/customers/cus_'))).toBe(true);
    const key = await db.selectFrom('data_keys').selectAll().where('customer_id', '=', customerId).executeTakeFirstOrThrow();
    expect(key).toMatchObject({ status: 'destroyed', wrapped_key: null });

    // The registration's workflow input still decodes at the codec layer, but the personal
    // fields inside were sealed under the destroyed key: unreadable, in history as anywhere.
    const history = await registration.fetchHistory();
    const started = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!;
    const [decoded] = await api.services.dataConverter.payloadCodecs![0]!.decode(started as never);
    const input = defaultPayloadConverter.fromPayload(decoded!) as { customer: SealedCustomer };
    // The API process had the key cached from the read above; the destruction notice evicts it.
    const apiEnvelope = new Envelope(api.services.dataKeys);
    await vi.waitFor(
      () =>
        expect(apiEnvelope.decrypt(Buffer.from(input.customer.fields.email, 'base64'), cell(customerId, 'email'))).rejects.toBeInstanceOf(
          DataKeyDestroyedError,
        ),
      { timeout: 5_000, interval: 50 },
    );

    const bystander = await get(otherId.customerId);
    expect(bystander.status).toBe(200);
    expect(((await bystander.json()) as { email: string }).email).toBe('bystander@example.com');

    const erased = (await listAuditEntries(db, { limit: 500 })).find((e) => e.action === 'customer.erased' && e.subjectId === customerId);
    expect(erased).toMatchObject({ actor: 'svc-privacy', purpose: 'GDPR art. 17 request 99', details: { dataKeysDestroyed: 1, stripeCustomerDeleted: true } });
  });
});
