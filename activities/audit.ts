import { ApplicationFailure } from '@temporalio/common';
import { appendAuditEntry } from '../src/audit/audit-dal';
import { AuditInputError, type AuditEntryInput } from '../src/audit/audit-types';
import type { Db } from '../src/db/database';

export function createAuditActivities(deps: { readonly db: Db }) {
  return {
    /**
     * Appends to the audit trail. The workflow passes `idempotencyKey` as
     * `<workflow id>:<step name>`, so a retried attempt returns the first one's entry.
     */
    async recordAudit(input: AuditEntryInput): Promise<{ seq: string; hash: string }> {
      try {
        const entry = await appendAuditEntry(deps.db, input);
        return { seq: entry.seq, hash: entry.hash };
      } catch (err) {
        // A refused entry stays refused: fail the workflow's call at once instead of retrying.
        // The message names the field and rule only, never the value.
        if (err instanceof AuditInputError) {
          throw ApplicationFailure.create({ type: 'AuditRejected', message: err.message, nonRetryable: true, details: [{ field: err.field }] });
        }
        throw err;
      }
    },
  };
}
