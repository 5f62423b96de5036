import type { Db } from '../src/db/database';
import { createAuditActivities } from './audit';
import { createCanaryActivities } from './canary';

/** Dependencies every activity factory draws from, narrowed per factory with Pick<>. */
export interface ActivityDeps {
  readonly identity: string;
  /** Connected as the application role: may append to the audit trail, never rewrite it. */
  readonly db: Db;
}

/** All activities of the general task queue; workflows proxy `ReturnType<typeof createActivities>`. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createCanaryActivities(deps),
    ...createAuditActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
