import type { Client } from '@temporalio/client';
import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/database';
import type { Authorize } from '../http/auth';
import { sendProblem } from '../http/problem';
import type { Config } from '../config/config';
import { RotationAlreadyRunningError, rotationStatus, startKeyRotation } from './key-rotation-service';

export interface KeyRotationRouteDeps {
  readonly db: Db;
  readonly temporal: Pick<Client, 'workflow'>;
  readonly config: Pick<Config, 'temporal'>;
  readonly authorize: Authorize;
}

const rotationIdParam = z.string().regex(/^key-rotation[:-][A-Za-z0-9:._-]{1,100}$/);

/** `POST /v1/key-rotations` starts one now (202, or 409 while one runs); `GET /v1/key-rotations/:id` shows its progress. */
export function createKeyRotationRouter(deps: KeyRotationRouteDeps): Router {
  const router = Router();

  router.post('/v1/key-rotations', ...deps.authorize('keys:rotate'), async (_req, res) => {
    try {
      const rotationId = await startKeyRotation(deps.temporal, deps.db, deps.config, res.locals.actor);
      res.status(202).location(`/v1/key-rotations/${encodeURIComponent(rotationId)}`).json({ rotationId, status: 'running' });
    } catch (err) {
      if (!(err instanceof RotationAlreadyRunningError)) throw err;
      sendProblem(res, { title: 'Conflict', status: 409, detail: `Key rotation ${err.runningId} is running; one at a time.`, runningRotationId: err.runningId });
    }
  });

  router.get('/v1/key-rotations/:id', ...deps.authorize('keys:rotate'), async (req, res) => {
    const id = rotationIdParam.safeParse(req.params.id);
    if (!id.success) return sendProblem(res, { title: 'Bad Request', status: 400, detail: 'Not a key rotation id.', errors: [{ field: 'path.id', message: 'must be a key rotation id (key-rotation:…)' }] });
    const status = await rotationStatus(deps.temporal, deps.db, id.data);
    if (!status) return sendProblem(res, { title: 'Not Found', status: 404, detail: `No key rotation ${id.data}.` });
    res.json(status);
  });
  return router;
}
