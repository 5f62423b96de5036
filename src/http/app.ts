import express, { type Express, type Router } from 'express';
import { checkHealth, type Dependency, type HealthCheck } from '../health/health';
import type { Logger } from '../log';
import { problemErrorHandler, sendProblem } from './problem';

export interface AppDeps {
  readonly log: Logger;
  readonly healthChecks: Record<Dependency, HealthCheck>;
  /** Feature routers (each authorises its own routes), mounted after JSON parsing. */
  readonly routers?: readonly Router[];
  /** Routers that read their own body (signed webhooks need the raw bytes), mounted before JSON parsing. */
  readonly rawBodyRouters?: readonly Router[];
}

/** The Express trigger API. Routes stay thin: validate, authorise, hand to Temporal. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);

  app.get('/healthz', async (_req, res) => {
    const report = await checkHealth(deps.healthChecks, deps.log);
    res.status(report.status === 'ok' ? 200 : 503).json(report);
  });

  for (const router of deps.rawBodyRouters ?? []) app.use(router);
  app.use(express.json({ limit: '100kb' }));
  for (const router of deps.routers ?? []) app.use(router);

  app.use((req, res) => sendProblem(res, { title: 'Not Found', status: 404, detail: `No route for ${req.method} ${req.path}.` }));
  app.use(problemErrorHandler(deps.log));
  return app;
}
