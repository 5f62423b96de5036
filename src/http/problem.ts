import type { ErrorRequestHandler, Response } from 'express';
import type { ZodError } from 'zod';
import { dependencyOutage, OUTAGE_RETRY_AFTER_SECONDS } from '../health/outage';
import { AuditInputError } from '../audit/audit-types';
import { errorMessage, type Logger } from '../log';

/** An RFC 9457 problem document. `errors` names each offending field. */
export interface Problem {
  readonly type?: string;
  readonly title: string;
  readonly status: number;
  readonly detail?: string;
  readonly errors?: readonly { readonly field: string; readonly message: string }[];
  readonly [extension: string]: unknown;
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export class HttpProblem extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail ?? problem.title);
    this.name = 'HttpProblem';
  }
}

export function sendProblem(res: Response, problem: Problem): void {
  res.status(problem.status).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify({ type: 'about:blank', ...problem }));
}

/** A 400 naming every invalid field of a zod validation, under `prefix` (e.g. "body"). */
export function validationProblem(error: ZodError, prefix: string): HttpProblem {
  return new HttpProblem({
    title: 'Invalid request',
    status: 400,
    detail: `The request ${prefix} is invalid.`,
    errors: error.issues.map((issue) => ({
      field: [prefix, ...issue.path.map(String)].join('.'),
      message: issue.message,
    })),
  });
}

/** What a caller reads about a dependency that is down; never its address or the SDK's message. */
const DEPENDENCY_NAMES = { postgres: 'PostgreSQL', kms: 'KMS', stripe: 'Stripe', temporal: 'Temporal' } as const;

/**
 * The last error handler: known problems go out as they are; a dependency that is down
 * is a 503 naming it, with Retry-After (nothing was half-done: the caller retries the same
 * request); anything else is a 500 whose cause is logged but never sent, since messages
 * may carry SQL or SDK details.
 */
export function problemErrorHandler(log: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (err instanceof HttpProblem) return sendProblem(res, err.problem);
    const down = dependencyOutage(err);
    if (down) {
      log.warn({ method: req.method, route: req.route?.path ?? req.path, dependency: down }, 'request refused: dependency down');
      res.setHeader('Retry-After', String(OUTAGE_RETRY_AFTER_SECONDS));
      return sendProblem(res, {
        type: 'urn:ledgerlock:dependency-unavailable',
        title: 'Service Unavailable',
        status: 503,
        detail: `${DEPENDENCY_NAMES[down]} is unavailable; retry after ${OUTAGE_RETRY_AFTER_SECONDS} seconds.`,
        dependency: down,
      });
    }
    // Routes validate what reaches the audit trail first; should something slip through, the
    // caller learns which field the trail refused (never its value) instead of getting a 500.
    if (err instanceof AuditInputError) {
      return sendProblem(res, { title: 'Unprocessable Content', status: 422, detail: 'The audit trail refused this request.', errors: [{ field: err.field, message: err.rule }] });
    }
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // body-parser's errors: malformed JSON, oversized body, wrong charset.
      return sendProblem(res, { title: httpTitle(status), status, detail: clientErrorDetail(status) });
    }
    log.error({ method: req.method, route: req.route?.path ?? req.path, reason: errorMessage(err) }, 'request failed');
    return sendProblem(res, { title: 'Internal Server Error', status: 500 });
  };
}

function clientErrorDetail(status: number): string {
  if (status === 413) return 'The request body is too large.';
  if (status === 415) return 'The request body must be application/json.';
  return 'The request body could not be parsed as JSON.';
}

function httpTitle(status: number): string {
  return status === 413 ? 'Payload Too Large' : status === 415 ? 'Unsupported Media Type' : 'Bad Request';
}
