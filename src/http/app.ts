import express, { type Express, type RequestHandler, type Router } from 'express';
import { cachedReadiness, type Dependency, type HealthCheck } from '../health/health';
import type { Logger } from '../log';
import { problemErrorHandler, sendProblem } from './problem';
import { requestLog } from './request-log';
import { routeSpans } from './route-spans';

export interface AppDeps {
  readonly log: Logger;
  readonly healthChecks: Record<Dependency, HealthCheck>;
  /** How long one readiness report answers `/readyz` (default 5 s). */
  readonly readinessTtlMs?: number;
  /** Feature routers (each authorises its own routes), mounted after JSON parsing. */
  readonly routers?: readonly Router[];
  /** Routers that read their own body (signed webhooks need the raw bytes), mounted before JSON parsing. */
  readonly rawBodyRouters?: readonly Router[];
  /** Limits /healthz and /readyz per source address; it must reach no dependency. */
  readonly healthLimit?: RequestHandler;
}

/** The Express trigger API. Routes stay thin: validate, authorise, hand to Temporal. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(requestLog(deps.log));
  app.use(routeSpans());

  // Liveness: this process answers. It reaches no dependency, so it costs nothing to ask.
  const limit = deps.healthLimit ? [deps.healthLimit] : [];
  app.get('/healthz', ...limit, (_req, res) => {
    res.status(200).json({ status: 'ok' });
  });
  // Readiness: every dependency's state, from a report shared for a few seconds.
  const readiness = cachedReadiness(deps.healthChecks, deps.log, { ttlMs: deps.readinessTtlMs ?? 5_000 });
  app.get('/readyz', ...limit, async (_req, res) => {
    const report = await readiness();
    res.status(report.status === 'ok' ? 200 : 503).json(report);
  });

  for (const router of deps.rawBodyRouters ?? []) app.use(router);
  app.use(express.json({ limit: '100kb' }));
  for (const router of deps.routers ?? []) app.use(router);

  app.use((req, res) => sendProblem(res, { title: 'Not Found', status: 404, detail: `No route for ${req.method} ${req.path}.` }));
  app.use(problemErrorHandler(deps.log));
  return app;
}
