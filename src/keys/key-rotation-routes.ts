import type { Client } from '@temporalio/client';
import { Router } from 'express';
import { z } from 'zod';
import type { Db } from '../db/database';
import type { Authorize } from '../http/auth';
import { sendProblem, validationProblem } from '../http/problem';
import { ROTATION_REASONS } from '../../workflows/key-rotation-contracts';
import type { Config } from '../config/config';
import { RotationAlreadyRunningError, rotationStatus, startKeyRotation } from './key-rotation-service';

export interface KeyRotationRouteDeps {
  readonly db: Db;
  readonly temporal: Pick<Client, 'workflow'>;
  readonly config: Pick<Config, 'temporal'>;
  readonly authorize: Authorize;
}

const rotationIdParam = z.string().regex(/^key-rotation[:-][A-Za-z0-9:._-]{1,100}$/);

/** No body, `{}`, or `{"reason": "suspected compromise"}` for an emergency rotation. */
const rotationBody = z.strictObject({ reason: z.enum(ROTATION_REASONS).optional() });

/**
 * `POST /v1/key-rotations` starts one now: 202, or 409 while another has not yet promoted its
 * keys (one waiting out its grace period has its grace ended by the new one). With
 * `{"reason": "suspected compromise"}` it is an emergency. `GET /v1/key-rotations/:id` shows its progress.
 */
export function createKeyRotationRouter(deps: KeyRotationRouteDeps): Router {
  const router = Router();

  router.post('/v1/key-rotations', ...deps.authorize('keys:rotate'), async (req, res) => {
    const body = rotationBody.safeParse(req.body ?? {});
    if (!body.success) throw validationProblem(body.error, 'body');
    const { reason } = body.data;
    try {
      const rotationId = await startKeyRotation(deps.temporal, deps.db, deps.config, res.locals.actor, reason);
      res.status(202).location(`/v1/key-rotations/${encodeURIComponent(rotationId)}`).json({ rotationId, status: 'running', ...(reason ? { reason } : {}) });
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
