import { appendAuditEntryReporting } from '../src/audit/audit-dal';
import { countAuditedMilestone } from '../src/metrics/audit-milestones';
import type { AuditEntryInput } from '../src/audit/audit-types';
import type { Db } from '../src/db/database';

export function createAuditActivities(deps: { readonly db: Db }) {
  return {
    /**
     * Appends to the audit trail. The workflow passes `idempotencyKey` as
     * `<workflow id>:<step name>`, so a retried attempt returns the first one's entry.
     * A refused entry (`AuditRejected`) or a key that already records other content
     * (`AuditKeyConflict`) fails the call at once, without retries.
     */
    async recordAudit(input: AuditEntryInput): Promise<{ seq: string; hash: string }> {
      // A refused entry (AuditInputError) fails at once, non-retryable, through the failure mapping.
      const { entry, outcome } = await appendAuditEntryReporting(deps.db, input);
      // Only the attempt that appended counts: milestones are counted once, however often retried.
      if (outcome === 'appended') countAuditedMilestone(input);
      return { seq: entry.seq, hash: entry.hash };
    },
  };
}
