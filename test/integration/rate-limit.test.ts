import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDb, type Db } from '../../src/db/database';
import { STRIPE_WEBHOOK_PATH } from '../../src/webhooks/webhook-routes';
import { freePort } from '../../src/stack/process';
import { pruneIdleBuckets, takeBucketToken } from '../../src/http/rate-limit-dal';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { startTestApi } from '../support/runtime';
import { testConfig, testEnv } from '../support/stack';
import { tokenFor } from '../support/tokens';

/** Small limits, so a test spends a burst in a few requests. */
const LIMITS = {
  RATE_LIMIT_READS_PER_SECOND: '1',
  RATE_LIMIT_READS_BURST: '4',
  RATE_LIMIT_WRITES_PER_SECOND: '1',
  RATE_LIMIT_WRITES_BURST: '2',
  RATE_LIMIT_ERASURES_PER_MINUTE: '1',
  RATE_LIMIT_ERASURES_BURST: '1',
  RATE_LIMIT_SOURCE_PER_SECOND: '1',
  RATE_LIMIT_SOURCE_BURST: '3',
};

async function startApiProcess(): Promise<{ url: string; cli: SpawnedCli }> {
  const port = await freePort();
  const cli = spawnCli(['api'], testEnv({ ...LIMITS, API_PORT: String(port), LOG_LEVEL: 'info' }));
  await cli.waitFor('api listening', 60_000);
  return { url: `http://127.0.0.1:${port}`, cli };
}

describe('rate limits shared by two API processes', () => {
  let apis: { url: string; cli: SpawnedCli }[] = [];
  const config = testConfig();
  beforeAll(async () => {
    apis = await Promise.all([startApiProcess(), startApiProcess()]);
  }, 90_000);
  afterAll(async () => {
    for (const api of apis) {
      api.cli.child.kill('SIGTERM');
      await api.cli.exited;
    }
  });

  const get = (i: number, path: string, token: string) => fetch(`${apis[i % 2]!.url}${path}`, { headers: { authorization: `Bearer ${token}` } });

  it('refuses an identity once the burst is spent across both processes, leaves others alone, and refills', async () => {
    const subject = `rl-reader-${randomUUID().slice(0, 8)}`;
    const token = await tokenFor(config, subject, ['audit:read', 'customers:write']);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(i, '/v1/audit?limit=1', token)).status);
    // Burst 4, refilling 1 a second: two processes do not make it 8.
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);

    const refused = await get(0, '/v1/audit?limit=1', token);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(refused.headers.get('retry-after')).toBe('1');
    const body = (await refused.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ title: 'Too Many Requests', status: 429, limitClass: 'read' });
    expect(body.detail).toMatch(/read requests/);
    expect(JSON.stringify(body)).not.toContain(subject);

    // Another identity has its own bucket; the same identity's writes have theirs.
    const other = await tokenFor(config, `rl-other-${randomUUID().slice(0, 8)}`, ['audit:read']);
    expect((await get(1, '/v1/audit?limit=1', other)).status).toBe(200);
    const write = await fetch(`${apis[1]!.url}/v1/customers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID() },
      body: '{}',
    });
    expect(write.status).toBe(400);

    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await get(1, '/v1/audit?limit=1', token)).status).toBe(200);
    expect((await get(0, '/v1/audit?limit=1', token)).status).toBe(429);
  });

  it('limits erasures far tighter, with a Retry-After of about a minute', async () => {
    const token = await tokenFor(config, `rl-eraser-${randomUUID().slice(0, 8)}`, ['customers:erase']);
    const erase = (i: number) => fetch(`${apis[i]!.url}/v1/customers/cust_${randomUUID().replaceAll('-', '')}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    // Past the limit, the route itself refuses the request for want of a purpose.
    expect((await erase(0)).status).toBe(400);
    const refused = await erase(1);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(55);
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    expect(((await refused.json()) as { limitClass: string }).limitClass).toBe('erase');
  });

  it('limits the webhook per source address across both processes', async () => {
    const post = (i: number) => fetch(`${apis[i % 2]!.url}${STRIPE_WEBHOOK_PATH}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await post(i)).status);
    // Unsigned: refused by the route (400) while the address has tokens, by the limit after.
    expect(statuses).toEqual([400, 400, 400, 429, 429]);
    const refused = await post(0);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(((await refused.json()) as { limitClass: string }).limitClass).toBe('source');
  });

  it('limits /healthz per source address in each process, from memory', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${apis[0]!.url}/healthz`)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    // The other process counts for itself: liveness reaches no shared state.
    expect((await fetch(`${apis[1]!.url}/healthz`)).status).toBe(200);
    const refused = await fetch(`${apis[0]!.url}/readyz`);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});

describe('rate limits without PostgreSQL', () => {
  it('answer 503 with Retry-After for an authenticated route, never a 500', async () => {
    const deadPort = await freePort();
    const config = testConfig({ DATABASE_APP_URL: `postgres://ledgerlock_app@127.0.0.1:${deadPort}/nowhere` });
    const api = await startTestApi(config);
    try {
      const token = await tokenFor(config, 'rl-outage', ['audit:read']);
      const res = await fetch(`${api.url}/v1/audit`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('5');
      expect(((await res.json()) as { dependency: string }).dependency).toBe('postgres');
      // Liveness still answers: its limit lives in memory.
      expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
    } finally {
      await api.stop();
    }
  });
});

describe('rate limit buckets in PostgreSQL', () => {
  let db: Db;
  beforeAll(() => {
    db = createDb(testConfig().databaseAppUrl, { max: 4 });
  });
  afterAll(() => db?.destroy());

  it('take one token per call under concurrency, and idle ones are pruned', async () => {
    const key = `test:${randomUUID()}`;
    const verdicts = await Promise.all(Array.from({ length: 12 }, () => takeBucketToken(db, key, { perSecond: 0.001, burst: 5 })));
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(5);
    expect(Math.max(...verdicts.map((v) => v.retryAfterSeconds))).toBeGreaterThan(900);

    await db.updateTable('rate_limit_buckets').set({ refilled_at: new Date(Date.now() - 2 * 3600_000) }).where('key', '=', key).execute();
    expect(await pruneIdleBuckets(db, 3600)).toBeGreaterThanOrEqual(1);
    expect(await db.selectFrom('rate_limit_buckets').select('key').where('key', '=', key).executeTakeFirst()).toBeUndefined();
  });
});
