import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { RequestHandler } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAuditEntry } from '../../src/audit/audit-dal';
import { createAuditRouter } from '../../src/audit/audit-routes';
import type { AuditEntry } from '../../src/audit/audit-types';
import type { Scope } from '../../src/auth/scopes';
import { createDb, type Db } from '../../src/db/database';
import { createApp } from '../../src/http/app';
import { sendProblem } from '../../src/http/problem';
import { createLogger } from '../../src/log';
import { testStack } from '../support/stack';

/** Stands in for the JWT middleware: the caller's scopes come from a header. */
function fakeAuthorize(asked: Scope[]) {
  return (scope: Scope): RequestHandler[] => {
    asked.push(scope);
    return [(req, res, next) => ((req.get('x-test-scopes') ?? '').split(' ').includes(scope) ? next() : sendProblem(res, { title: 'Forbidden', status: 403 }))];
  };
}

interface Page {
  entries: AuditEntry[];
  next: string | null;
}

describe('GET /v1/audit', () => {
  const asked: Scope[] = [];
  let db: Db;
  let server: http.Server;
  let base: string;
  let appended: AuditEntry[];

  const get = (query: string, scopes = 'audit:read') => fetch(`${base}/v1/audit${query}`, { headers: { 'x-test-scopes': scopes } });
  const page = async (query: string): Promise<Page> => {
    const res = await get(query);
    expect(res.status).toBe(200);
    return (await res.json()) as Page;
  };

  beforeAll(async () => {
    db = createDb(testStack().databaseUrl, { role: 'ledgerlock_app', max: 4 });
    const up = async () => undefined;
    const app = createApp({
      log: createLogger('error'),
      healthChecks: { temporal: up, postgres: up, kms: up, stripe: up },
      routers: [createAuditRouter({ db, authorize: fakeAuthorize(asked) })],
    });
    server = http.createServer(app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = randomUUID();
    appended = [];
    // One at a time, so they are the newest five entries in this order.
    for (let i = 0; i < 5; i++) {
      appended.push(await appendAuditEntry(db, { idempotencyKey: `wf-${run}:step-${i}`, actor: 'svc-routes-test', action: 'customer.read', subjectType: 'customer', subjectId: `cust_${i}` }));
    }
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await db?.destroy();
  });

  it('asks for audit:read and refuses a caller without it', async () => {
    expect(asked).toEqual(['audit:read']);
    expect((await get('', 'customers:read')).status).toBe(403);
  });

  it('pages through entries oldest first with the next cursor, ending with null', async () => {
    const seqs = appended.map((e) => e.seq);
    const start = String(BigInt(seqs[0]!) - 1n);

    const first = await page(`?after=${start}&limit=2`);
    expect(first).toEqual({ entries: appended.slice(0, 2), next: seqs[1] });
    const second = await page(`?after=${first.next}&limit=2`);
    expect(second).toEqual({ entries: appended.slice(2, 4), next: seqs[3] });
    const last = await page(`?after=${second.next}&limit=2`);
    expect(last).toEqual({ entries: appended.slice(4), next: null });
    // A page that ends exactly at the newest entry says there is no more.
    expect(await page(`?after=${seqs[2]}&limit=2`)).toEqual({ entries: appended.slice(3), next: null });
  });

  it('gives 100 entries when no limit is asked for, and starts at the first entry without a cursor', async () => {
    const run = randomUUID();
    const more = await Promise.all(
      Array.from({ length: 101 }, (_, i) =>
        appendAuditEntry(db, { idempotencyKey: `wf-${run}:bulk-${i}`, actor: 'svc-routes-test', action: 'customer.read', subjectType: 'customer', subjectId: 'cust_bulk' }),
      ),
    );
    const seqs = more.map((e) => BigInt(e.seq)).sort((a, b) => (a < b ? -1 : 1));
    const res = await get(`?after=${seqs[0]! - 1n}`);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as Page;
    expect(body.entries.map((e) => e.seq)).toEqual(seqs.slice(0, 100).map(String));
    expect(body.next).toBe(String(seqs[99]));
    expect((await page('?limit=1')).entries[0]!.seq).toBe('1');
  });

  it('answers a bad query with 400 problem+json naming the field', async () => {
    for (const [query, field] of [
      ['?limit=0', 'query.limit'],
      ['?limit=501', 'query.limit'],
      ['?limit=ten', 'query.limit'],
      ['?limit=1&limit=2', 'query.limit'],
      ['?after=-1', 'query.after'],
      ['?after=abc&limit=5', 'query.after'],
    ] as const) {
      const res = await get(query);
      expect(res.status, query).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      const problem = (await res.json()) as { status: number; errors: { field: string }[] };
      expect(problem.status).toBe(400);
      expect(problem.errors.map((e) => e.field), query).toEqual([field]);
    }
    expect((await get('?limit=500')).status).toBe(200);
  });
});
