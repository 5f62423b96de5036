import { randomUUID } from 'node:crypto';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { z } from 'zod';
import { AuditActorUnavailableError, type ActorOf } from '../audit/audit-actor';
import type { AuditEntryInput } from '../audit/audit-types';
import type { Principal, Scope } from '../auth/scopes';
import type { TokenVerifier } from '../auth/tokens';
import { CryptoError } from '../crypto/errors';
import { sendActorUnavailable } from '../http/auth';
import { problemErrorHandler, sendProblem, validationProblem } from '../http/problem';
import { requestLog } from '../http/request-log';
import { routeSpans } from '../http/route-spans';
import { errorMessage, type Logger } from '../log';
import { KmsPayloadCodec } from '../temporal/payload-codec';

/**
 * The codec server of the Temporal Web UI: it decodes payloads for authorised operators
 * only, and writes an audit entry for every decode. Encoding (what the UI does to send a
 * signal or an update) mints ciphertext every worker accepts, so it needs its own scope,
 * `payload:encode`, and every encode is audited before anything is encrypted.
 *
 * Two ways in: a bearer token (the UI's "pass access token" mode behind the UI's own OIDC
 * login, in production), or a session cookie this server sets from a minted token on its
 * /login page (the UI's "include credentials" mode, for the local UI that has no login).
 * Either way the token must carry the `payload:decrypt` scope (and `payload:encode` to encode).
 */
export const SESSION_COOKIE = 'ledgerlock_codec_session';

export interface CodecServerDeps {
  readonly codec: PayloadCodec;
  readonly verify: TokenVerifier;
  /** The operator as the audit trail names them: a pseudonym for a personal subject such as an email. */
  readonly actorOf: ActorOf;
  readonly recordAudit: (entry: AuditEntryInput) => Promise<unknown>;
  readonly corsOrigins: readonly string[];
  /** Marks the session cookie Secure; set when the server is reached over HTTPS. */
  readonly secureCookies: boolean;
  readonly log: Logger;
}

/** A payload as the Web UI sends it: proto3 JSON, bytes in base64. */
const jsonPayloads = z.object({
  payloads: z
    .array(
      z.object({
        metadata: z.record(z.string(), z.string().base64()).optional(),
        data: z.string().base64().optional(),
      }),
    )
    .max(10_000),
});

type JsonPayload = z.infer<typeof jsonPayloads>['payloads'][number];

function fromJson(payload: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(payload.data ?? '', 'base64'),
  };
}

function toJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

export function createCodecApp(deps: CodecServerDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // Like the API's: one line per request (never its headers: the session cookie, the token), the route's span.
  app.use(requestLog(deps.log));
  app.use(routeSpans());
  app.use(cors(deps.corsOrigins));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/login', (_req, res) => {
    res.type('html').send(loginPage());
  });

  app.post('/login', express.urlencoded({ extended: false, limit: '16kb' }), async (req, res) => {
    const token = typeof req.body?.token === 'string' ? req.body.token.trim() : '';
    const principal = await deps.verify(token).catch(() => undefined);
    if (!principal) return void res.status(401).type('html').send(loginPage('That token is not valid.'));
    if (!principal.scopes.includes('payload:decrypt')) {
      return void res.status(403).type('html').send(loginPage('That token lacks the payload:decrypt scope.'));
    }
    const exp = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).exp as number;
    res.cookie(SESSION_COOKIE, token, {
      httpOnly: true,
      sameSite: 'strict',
      secure: deps.secureCookies,
      path: '/',
      maxAge: Math.max(0, exp * 1000 - Date.now()),
    });
    res.type('html').send(`<!doctype html><title>Ledgerlock codec</title><p>Signed in as ${escapeHtml(principal.subject)}. Payloads now decode in the Temporal Web UI; reload it.</p>`);
  });

  app.post('/logout', (_req, res) => {
    res.clearCookie(SESSION_COOKIE, { path: '/' });
    res.status(204).end();
  });

  const json = express.json({ limit: '8mb' });

  app.post('/decode', authenticate(deps, 'payload:decrypt'), json, async (req, res) => {
    const body = jsonPayloads.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const payloads = body.data.payloads.map(fromJson);
    const namespace = String(req.header('x-namespace') ?? 'unknown');
    // Audited before anything is released: an audit trail that cannot be written means no decode.
    await deps.recordAudit({
      idempotencyKey: `codec-decode:${randomUUID()}`,
      actor: res.locals.actor,
      action: 'payload.decode',
      subjectType: 'temporal-namespace',
      subjectId: namespace,
      purpose: 'operator viewing workflow payloads in the Temporal Web UI',
      details: { payloads: payloads.length, payloadKeys: KmsPayloadCodec.keyIdsOf(payloads).join(',') || null },
    });
    const decoded = await deps.codec.decode(payloads);
    res.json({ payloads: decoded.map(toJson) });
  });

  app.post('/encode', authenticate(deps, 'payload:encode'), json, async (req, res) => {
    const body = jsonPayloads.safeParse(req.body);
    if (!body.success) throw validationProblem(body.error, 'body');
    const principal = res.locals.principal as Principal;
    const payloads = body.data.payloads.map(fromJson);
    const namespace = String(req.header('x-namespace') ?? 'unknown');
    // What is encoded here, workers accept as ours: audited before anything is encrypted.
    await deps.recordAudit({
      idempotencyKey: `codec-encode:${randomUUID()}`,
      actor: principal.subject,
      action: 'payload.encode',
      subjectType: 'temporal-namespace',
      subjectId: namespace,
      purpose: 'operator sending a signal or an update from the Temporal Web UI',
      details: { payloads: payloads.length, bytes: payloads.reduce((n, p) => n + (p.data?.length ?? 0), 0) },
    });
    const encoded = await deps.codec.encode(payloads);
    res.json({ payloads: encoded.map(toJson) });
  });

  app.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    // A payload we cannot decrypt (tampered, or its customer's key shredded) is the caller's problem, not a crash.
    if (err instanceof CryptoError && !err.retryable) {
      return sendProblem(res, { title: 'Payload cannot be decoded', status: 422, detail: err.message, type: `urn:ledgerlock:${err.type}` });
    }
    next(err);
  });
  app.use(problemErrorHandler(deps.log));
  return app;
}

/** Bearer token first, then the session cookie; either must hold `scope`. */
function authenticate(deps: CodecServerDeps, scope: Scope) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const header = req.header('authorization');
    const bearer = header?.match(/^Bearer\s+(\S+)$/i)?.[1];
    const cookie = bearer ? undefined : readCookie(req, SESSION_COOKIE);
    if (cookie && !originAllowed(req, deps.corsOrigins)) {
      // A cookie travels with any same-site request; only the UI's own origins may use it.
      return sendProblem(res, { title: 'Forbidden', status: 403, detail: 'This origin may not use the codec session.' });
    }
    const token = bearer ?? cookie;
    if (!token) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      return sendProblem(res, { title: 'Unauthorized', status: 401, detail: `Sign in at /login or send a bearer token with the ${scope} scope.` });
    }
    let principal: Principal;
    try {
      principal = await deps.verify(token);
    } catch (err) {
      deps.log.warn({ reason: errorMessage(err) }, 'codec token rejected');
      res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
      return sendProblem(res, { title: 'Unauthorized', status: 401, detail: 'The token is invalid or expired.' });
    }
    if (!principal.scopes.includes(scope)) {
      return sendProblem(res, { title: 'Forbidden', status: 403, detail: `The token lacks the ${scope} scope.` });
    }
    try {
      res.locals.actor = await deps.actorOf(principal.subject);
    } catch (err) {
      if (!(err instanceof AuditActorUnavailableError)) return next(err);
      deps.log.warn({ reason: err.message }, 'audit actor unavailable');
      return sendActorUnavailable(res);
    }
    res.locals.principal = principal;
    next();
  };
}

function originAllowed(req: Request, origins: readonly string[]): boolean {
  const origin = req.header('origin');
  return origin === undefined || origins.includes(origin);
}

function cors(origins: readonly string[]) {
  return (req: Request, res: Response, next: NextFunction) => {
    const origin = req.header('origin');
    if (origin && origins.includes(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Vary', 'Origin');
    }
    if (req.method === 'OPTIONS') return void res.status(origin && origins.includes(origin) ? 204 : 403).end();
    next();
  };
}

function readCookie(req: Request, name: string): string | undefined {
  for (const part of (req.header('cookie') ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(error?: string): string {
  // A relative action posts back to wherever this page is served: /login here, /codec/login through the Web UI's proxy.
  return `<!doctype html><title>Ledgerlock codec sign-in</title>
<h1>Decrypt payloads in the Temporal Web UI</h1>
${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<p>Paste a token with the <code>payload:decrypt</code> scope (<code>npx ledgerlock token --sub you@ops --scopes payload:decrypt</code>).</p>
<form method="post" action="login"><textarea name="token" rows="6" cols="80" required></textarea><br><button type="submit">Sign in</button></form>`;
}
