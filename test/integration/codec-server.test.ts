import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KMSClient } from '@aws-sdk/client-kms';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import { createActorOf } from '../../src/audit/audit-actor';
import { appendAuditEntry, listAuditEntries } from '../../src/audit/audit-dal';
import { createTokenVerifier } from '../../src/auth/tokens';
import { createCodecApp, SESSION_COOKIE } from '../../src/codec/codec-server';
import { codecKeyAlias, ownerDatabaseUrl } from '../../src/config/config';
import { createDb, type Db } from '../../src/db/database';
import { createKmsClient } from '../../src/kms/kms-client';
import { createLogger } from '../../src/log';
import { KmsPayloadCodec } from '../../src/temporal/payload-codec';
import { testConfig } from '../support/stack';
import { tokenFor } from '../support/tokens';

const UI = 'http://127.0.0.1:8233';
const toJson = (p: Payload) => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});

describe('codec server for the Temporal Web UI', () => {
  const config = testConfig();
  let db: Db;
  let kms: KMSClient;
  let codec: KmsPayloadCodec;
  let server: http.Server;
  let url: string;
  let encodedJson: ReturnType<typeof toJson>[];
  const codecApp = (actorKms: KMSClient) =>
    createCodecApp({
      codec,
      verify: createTokenVerifier(config),
      actorOf: createActorOf({ kms: actorKms, config }),
      recordAudit: (entry) => appendAuditEntry(db, entry),
      corsOrigins: [UI],
      secureCookies: false,
      log: createLogger('error'),
    });
  const listen = async (app: ReturnType<typeof createCodecApp>) => {
    const started = http.createServer(app);
    await new Promise<void>((resolve) => started.listen(0, '127.0.0.1', resolve));
    return { server: started, url: `http://127.0.0.1:${(started.address() as AddressInfo).port}` };
  };

  beforeAll(async () => {
    db = createDb(ownerDatabaseUrl(config), { max: 2 });
    kms = createKmsClient(config);
    codec = new KmsPayloadCodec({ kms, masterKeyId: codecKeyAlias(config), limits: config.dataKeyCache });
    ({ server, url } = await listen(codecApp(kms)));
    const encoded = await codec.encode([defaultPayloadConverter.toPayload({ email: 'ui-probe@example.com' })]);
    encodedJson = encoded.map(toJson);
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    kms.destroy();
    await db.destroy();
  });

  const decode = (headers: Record<string, string>) =>
    fetch(`${url}/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
      body: JSON.stringify({ payloads: encodedJson }),
    });

  it('decodes for an operator with payload:decrypt, and audits who, where and how many', async () => {
    const token = await tokenFor(config, 'ops-alice', ['payload:decrypt']);
    const res = await decode({ authorization: `Bearer ${token}`, origin: UI });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(UI);
    const body = (await res.json()) as { payloads: { data: string }[] };
    expect(Buffer.from(body.payloads[0]!.data, 'base64').toString()).toContain('ui-probe@example.com');

    const entries = await listAuditEntries(db, { limit: 500 });
    const entry = entries.filter((e) => e.action === 'payload.decode').at(-1)!;
    expect(entry).toMatchObject({ actor: 'ops-alice', subjectType: 'temporal-namespace', subjectId: 'default' });
    expect(entry.details).toMatchObject({ payloads: 1 });
    expect(JSON.stringify(entry)).not.toContain('ui-probe');
  });

  it('decodes for an operator whose sub is an email, auditing a stable pseudonym and never the email', async () => {
    const email = 'ops@example.com';
    const decodeAs = async (subject: string) => {
      const res = await decode({ authorization: `Bearer ${await tokenFor(config, subject, ['payload:decrypt'])}`, origin: UI });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { payloads: { data: string }[] };
      expect(Buffer.from(body.payloads[0]!.data, 'base64').toString()).toContain('ui-probe@example.com');
      return (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'payload.decode').at(-1)!;
    };
    const first = await decodeAs(email);
    const second = await decodeAs(email);
    expect(first.seq).not.toBe(second.seq);
    expect(first.actor).toMatch(/^pseudonym:[0-9a-f]{32}$/);
    expect(second.actor).toBe(first.actor);
    // Another person, another pseudonym; a name with a space is personal too.
    expect((await decodeAs('other.ops@example.com')).actor).not.toBe(first.actor);
    expect((await decodeAs('Ada Lovelace')).actor).toMatch(/^pseudonym:/);
    // A subject dressed up as a pseudonym is pseudonymised in turn, so nobody can pose as one.
    expect((await decodeAs(first.actor)).actor).not.toBe(first.actor);

    // The session-cookie path names the same pseudonym.
    const login = await fetch(`${url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: await tokenFor(config, email, ['payload:decrypt']) }),
    });
    expect(login.status).toBe(200);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect((await decode({ cookie, origin: UI })).status).toBe(200);
    expect((await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'payload.decode').at(-1)!.actor).toBe(first.actor);

    const { rows } = await sql<{ seq: string }>`select seq from audit_log where lower(audit_log::text) like ${'%ops@example.com%'} or lower(audit_log::text) like ${'%lovelace%'}`.execute(db);
    expect(rows).toEqual([]);
  });

  it('answers 503 with a problem, never a 500, while the audit key cannot pseudonymise an operator, and decodes nothing', async () => {
    const deadKms = createKmsClient({ kms: { ...config.kms, endpoint: 'http://127.0.0.1:9' } });
    const broken = await listen(codecApp(deadKms));
    try {
      const res = await fetch(`${broken.url}/decode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await tokenFor(config, 'ops@example.com', ['payload:decrypt'])}` },
        body: JSON.stringify({ payloads: encodedJson }),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.headers.get('retry-after')).toBe('5');
      const text = await res.text();
      expect(text).toMatch(/audit trail cannot record who you are/);
      expect(text).not.toContain('ops@example.com');
      expect(text).not.toContain('ui-probe');
      // A service identity needs no KMS call, so it still decodes.
      const service = await fetch(`${broken.url}/decode`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await tokenFor(config, 'ops-alice', ['payload:decrypt'])}` },
        body: JSON.stringify({ payloads: encodedJson }),
      });
      expect(service.status).toBe(200);
    } finally {
      await new Promise((resolve) => broken.server.close(resolve));
      deadKms.destroy();
    }
  });

  it('decodes nothing without a token (401), or with a token lacking the scope (403)', async () => {
    const anonymous = await decode({});
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain('ui-probe');

    const token = await tokenFor(config, 'svc-billing', ['subscriptions:read', 'customers:read']);
    const unscoped = await decode({ authorization: `Bearer ${token}` });
    expect(unscoped.status).toBe(403);
    expect(await unscoped.text()).not.toContain('ui-probe');

    const garbage = await decode({ authorization: 'Bearer not.a.token' });
    expect(garbage.status).toBe(401);
  });

  it('signs a local operator in with a session cookie, usable only from the UI origin', async () => {
    const refused = await fetch(`${url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: await tokenFor(config, 'svc', ['audit:read']) }),
    });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('set-cookie')).toBeNull();

    const login = await fetch(`${url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: await tokenFor(config, 'ops-bob', ['payload:decrypt']) }),
    });
    expect(login.status).toBe(200);
    const setCookie = login.headers.get('set-cookie')!;
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE}=`));
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    const cookie = setCookie.split(';')[0]!;

    expect((await decode({ cookie, origin: UI })).status).toBe(200);
    expect((await decode({ cookie, origin: 'http://127.0.0.1:9999' })).status).toBe(403);
  });

  it('answers the CORS preflight for the UI origin only', async () => {
    const ok = await fetch(`${url}/decode`, { method: 'OPTIONS', headers: { origin: UI, 'access-control-request-method': 'POST' } });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    expect(ok.headers.get('access-control-allow-headers')).toContain('X-Namespace');
    const other = await fetch(`${url}/decode`, { method: 'OPTIONS', headers: { origin: 'http://evil.example' } });
    expect(other.status).toBe(403);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers a tampered payload with a problem, not garbage', async () => {
    const token = await tokenFor(config, 'ops-alice', ['payload:decrypt']);
    const data = Buffer.from(encodedJson[0]!.data, 'base64');
    data[data.length - 1]! ^= 1;
    const res = await fetch(`${url}/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ payloads: [{ ...encodedJson[0], data: data.toString('base64') }] }),
    });
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
  });

  const encode = (headers: Record<string, string>, value: unknown = { reason: 'operator-cancel' }) =>
    fetch(`${url}/encode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
      body: JSON.stringify({ payloads: [toJson(defaultPayloadConverter.toPayload(value))] }),
    });

  it('encodes only for payload:encode: a decrypt-only operator gets 403 and no ciphertext', async () => {
    const decryptOnly = await tokenFor(config, 'ops-reader', ['payload:decrypt']);
    const before = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'payload.encode').length;
    const refused = await encode({ authorization: `Bearer ${decryptOnly}` });
    expect(refused.status).toBe(403);
    expect(refused.headers.get('content-type')).toMatch(/problem\+json/);
    expect(((await refused.json()) as { detail: string }).detail).toContain('payload:encode');
    expect((await encode({})).status).toBe(401);

    // A session cookie of a decrypt-only operator does not encode either.
    const login = await fetch(`${url}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: decryptOnly }),
    });
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    expect((await encode({ cookie, origin: UI })).status).toBe(403);
    const after = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'payload.encode').length;
    expect(after).toBe(before);
  });

  it('encodes for the UI (signal and update input) with payload:encode, audits who and how many, and the result decodes', async () => {
    const token = await tokenFor(config, 'ops-writer', ['payload:decrypt', 'payload:encode']);
    const res = await encode({ authorization: `Bearer ${token}`, origin: UI });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(body.payloads[0]!.data, 'base64').toString()).not.toContain('operator-cancel');

    const entry = (await listAuditEntries(db, { limit: 1000 })).filter((e) => e.action === 'payload.encode').at(-1)!;
    expect(entry).toMatchObject({ actor: 'ops-writer', subjectType: 'temporal-namespace', subjectId: 'default' });
    expect(entry.details).toMatchObject({ payloads: 1 });
    expect(JSON.stringify(entry)).not.toContain('operator-cancel');

    const [decoded] = await codec.decode([
      {
        metadata: Object.fromEntries(Object.entries(body.payloads[0]!.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
        data: Buffer.from(body.payloads[0]!.data, 'base64'),
      },
    ]);
    expect(defaultPayloadConverter.fromPayload(decoded!)).toEqual({ reason: 'operator-cancel' });
  });
});
