import { context } from '@opentelemetry/api';
import type { RequestHandler, Request, Response } from 'express';
import type { Logger, LogFields } from '../log';

/**
 * Routes whose `:id` names a customer or a subscription: logged as that field, and only when
 * it has the shape of our ids (the path is the caller's text: an email typed there stays out).
 */
const ID_FIELDS: readonly (readonly [prefix: string, field: string, shape: RegExp])[] = [
  ['/v1/customers/:id', 'customerId', /^cust_[a-z0-9]{20,40}$/],
  ['/v1/subscriptions/:id', 'subscriptionId', /^sub_ll_[a-z0-9]{20,40}$/],
];

/** Liveness and readiness are polled: their lines are debug, not info. */
const POLLED = new Set(['/healthz', '/readyz']);

/**
 * Adds the seed's identifiers of what a request touched (customer, subscription, workflow,
 * webhook event) to its log line. Opaque ids only.
 */
export function logFields(res: Response, fields: LogFields): void {
  res.locals.logFields = { ...(res.locals.logFields as LogFields | undefined), ...fields };
}

/**
 * One line per request once its response is sent: method, route pattern (never the raw
 * path, which is the caller's text), status, duration, and the ids the route named. Headers
 * and bodies are never logged.
 */
export function requestLog(log: Logger): RequestHandler {
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    // Bound to the request's context: the line carries the request's trace id whatever context 'finish' fires in.
    res.on('finish', context.bind(context.active(), () => {
      const route = routeOf(req);
      const fields: LogFields = {
        method: req.method,
        route: route ?? null,
        status: res.statusCode,
        durationMs: Number((process.hrtime.bigint() - started) / 1000n) / 1000,
        ...idsOf(req, route),
        ...(res.locals.logFields as LogFields | undefined),
      };
      if (route && POLLED.has(route)) log.debug(fields, 'request');
      else log.info(fields, 'request');
    }));
    next();
  };
}

export function routeOf(req: Request): string | undefined {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === 'string' ? `${req.baseUrl}${path}` : undefined;
}

function idsOf(req: Request, route: string | undefined): LogFields {
  const id = req.params?.id;
  if (!route || typeof id !== 'string') return {};
  const match = ID_FIELDS.find(([prefix]) => route === prefix || route.startsWith(`${prefix}/`));
  return match && match[2].test(id) ? { [match[1]]: id } : {};
}
