import type { RequestHandler, Response } from 'express';
import { AuditActorUnavailableError, type ActorOf } from '../audit/audit-actor';
import type { Principal, Scope } from '../auth/scopes';
import { createTokenVerifier, InvalidTokenError, type TokenVerifier } from '../auth/tokens';
import type { Config } from '../config/config';
import type { Logger } from '../log';
import { sendProblem } from './problem';
import { tokenRefusals } from '../metrics/metrics';

declare global {
  namespace Express {
    interface Locals {
      /** The verified caller; set by {@link authenticate}, so present on every route behind it. */
      principal: Principal;
      /** Who the audit trail and workflows name for the caller: the subject, or its pseudonym (see audit-actor.ts). */
      actor: string;
    }
  }
}

/** What feature routers receive: `router.get('/v1/audit', ...authorize('audit:read'), handler)`. */
export type Authorize = (scope: Scope) => RequestHandler[];

const BEARER = /^Bearer +([^\s]+) *$/i;

/**
 * Requires `Authorization: Bearer <jwt>` and puts the verified caller in
 * `res.locals.principal`, and, given `actorOf`, their audit identity in `res.locals.actor`.
 * Every failure is the same generic 401 (RFC 6750): why a token was refused goes to the
 * log only, and the token itself goes nowhere.
 */
export function authenticate(verify: TokenVerifier, log?: Logger, actorOf?: ActorOf): RequestHandler {
  return async (req, res, next) => {
    const header = req.get('authorization');
    if (header === undefined) {
      tokenRefusals.inc({ reason: 'missing' });
      res.set('WWW-Authenticate', 'Bearer');
      return sendProblem(res, { title: 'Unauthorized', status: 401, detail: 'This endpoint needs a bearer token in the Authorization header.' });
    }
    const token = BEARER.exec(header)?.[1];
    try {
      if (token === undefined) {
        tokenRefusals.inc({ reason: 'malformed' });
        throw new InvalidTokenError('the Authorization header is not "Bearer <token>"', 'malformed');
      }
      res.locals.principal = await verify(token);
    } catch (err) {
      if (!(err instanceof InvalidTokenError)) return next(err);
      log?.info({ method: req.method, path: req.path, reason: err.message }, 'token refused');
      res.set('WWW-Authenticate', 'Bearer error="invalid_token"');
      return sendProblem(res, { title: 'Unauthorized', status: 401, detail: 'The bearer token is invalid or has expired.' });
    }
    if (actorOf) {
      try {
        res.locals.actor = await actorOf(res.locals.principal.subject);
      } catch (err) {
        if (!(err instanceof AuditActorUnavailableError)) return next(err);
        log?.warn({ reason: err.message }, 'audit actor unavailable');
        return sendActorUnavailable(res);
      }
    }
    return next();
  };
}

/** Nothing is done for a caller the audit trail cannot name: a 503 to retry, never a 500. */
export function sendActorUnavailable(res: Response): void {
  res.set('Retry-After', '5');
  sendProblem(res, { title: 'Service Unavailable', status: 503, detail: 'The audit trail cannot record who you are right now (its KMS key is unavailable); retry shortly.' });
}

/** 403 unless the authenticated caller holds `scope` (401 when nobody authenticated). */
export function requireScope(scope: Scope): RequestHandler {
  return (_req, res, next) => {
    // locals is typed as always holding a principal; at run time it does only behind authenticate.
    const principal = res.locals.principal as Principal | undefined;
    if (!principal) {
      res.set('WWW-Authenticate', 'Bearer');
      return sendProblem(res, { title: 'Unauthorized', status: 401, detail: 'This endpoint needs a bearer token in the Authorization header.' });
    }
    if (!principal.scopes.includes(scope)) {
      res.set('WWW-Authenticate', `Bearer error="insufficient_scope", scope="${scope}"`);
      return sendProblem(res, { title: 'Forbidden', status: 403, detail: `The token lacks the scope ${scope}.`, requiredScope: scope });
    }
    return next();
  };
}

/** `authenticate` then `requireScope`, for one route. */
export function authorize(verify: TokenVerifier, log?: Logger, actorOf?: ActorOf): Authorize {
  const authenticated = authenticate(verify, log, actorOf);
  return (scope) => [authenticated, requireScope(scope)];
}

/** The `authorize` dependency of feature routers, verifying tokens as `config` says. */
export function createAuthorizer(config: Pick<Config, 'mode' | 'dataDir' | 'auth'>, log?: Logger): Authorize {
  return authorize(createTokenVerifier(config), log);
}
