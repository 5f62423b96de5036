import { Router, type RequestHandler } from 'express';
import { z } from 'zod';
import type { Scope } from '../auth/scopes';
import type { Db } from '../db/database';
import { validationProblem } from '../http/problem';
import { listAuditEntries } from './audit-dal';

export interface AuditRouterDeps {
  readonly db: Db;
  /** Authentication and the scope check, as middleware: injected, so this router knows no token format. */
  readonly authorize: (scope: Scope) => RequestHandler[];
}

export const MAX_AUDIT_PAGE = 500;
const DEFAULT_AUDIT_PAGE = 100;

const pageQuery = z.object({
  // 18 digits stay inside bigint; a longer cursor is no seq we ever handed out.
  after: z.string().regex(/^(0|[1-9]\d{0,17})$/, 'must be the seq of an entry (a non-negative integer)').optional(),
  limit: z
    .string()
    .regex(/^\d{1,3}$/, `must be an integer from 1 to ${MAX_AUDIT_PAGE}`)
    .transform(Number)
    .pipe(z.number().min(1, `must be an integer from 1 to ${MAX_AUDIT_PAGE}`).max(MAX_AUDIT_PAGE, `must be an integer from 1 to ${MAX_AUDIT_PAGE}`))
    .default(DEFAULT_AUDIT_PAGE),
});

/**
 * `GET /v1/audit?after=<seq>&limit=<n>` (scope `audit:read`): entries oldest first, and
 * `next`, the cursor for the following page, or null on the last one.
 */
export function createAuditRouter(deps: AuditRouterDeps): Router {
  const router = Router();
  router.get('/v1/audit', ...deps.authorize('audit:read'), async (req, res) => {
    const query = pageQuery.safeParse(req.query);
    if (!query.success) throw validationProblem(query.error, 'query');
    const { after, limit } = query.data;
    // One more than asked says whether another page exists, so the last page says so itself.
    const entries = await listAuditEntries(deps.db, { afterSeq: after, limit: limit + 1 });
    const page = entries.slice(0, limit);
    res.set('cache-control', 'no-store');
    res.json({ entries: page, next: entries.length > limit ? page[page.length - 1]!.seq : null });
  });
  return router;
}
