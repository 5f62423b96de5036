/**
 * The audit trail's contracts: who did what to which subject, and why. Entries carry
 * opaque ids and key ids only, never personal data (see audit-guard.ts).
 */

export type AuditDetailValue = string | number | boolean | null;
export type AuditDetails = Readonly<Record<string, AuditDetailValue>>;

export interface AuditEntryInput {
  /** Makes retries harmless: workflows use `<workflow id>:<step name>`. */
  readonly idempotencyKey: string;
  /** A service identity, an operator's token subject, or `workflow:<id>`. */
  readonly actor: string;
  /** Dotted, lower case: `customer.read`, `payload.decode`, `saga.step`. */
  readonly action: string;
  readonly subjectType: string;
  /** An opaque id (`cust_…`, a key id), never an email address or a name. */
  readonly subjectId: string;
  readonly purpose?: string | null;
  readonly details?: AuditDetails;
  /** ISO 8601; defaults to now. Workflows pass their own (deterministic) time. */
  readonly occurredAt?: string;
}

export interface AuditEntry {
  /** A bigint, as a decimal string. */
  readonly seq: string;
  readonly idempotencyKey: string;
  /** ISO 8601 in UTC with millisecond precision, exactly as hashed. */
  readonly occurredAt: string;
  readonly actor: string;
  readonly action: string;
  readonly subjectType: string;
  readonly subjectId: string;
  readonly purpose: string | null;
  readonly details: AuditDetails;
  readonly prevHash: string;
  /** Hex SHA-256 over `prevHash`, a newline and the canonical JSON of the content. */
  readonly hash: string;
}

/**
 * What was done to the audit trail: an entry's content changed, an entry removed, a link
 * forged, the newest entries cut off, the chain rewritten and rehashed, or a checkpoint
 * that KMS did not sign.
 */
export type AuditTampering = 'edited' | 'deleted' | 'relinked' | 'truncated' | 'rewritten' | 'forged-checkpoint';

export type AuditChainVerdict =
  | { readonly ok: true; readonly entries: number }
  /** `brokenAt` is the seq of the first entry that fails; `reason` names no content. */
  | { readonly ok: false; readonly brokenAt: string; readonly reason: string; readonly tampering: 'edited' | 'deleted' | 'relinked' };

/**
 * An entry the audit trail refuses, e.g. one carrying what looks like personal data.
 * Retrying cannot help. The message names the field and the rule, never the value.
 */
export class AuditInputError extends Error {
  constructor(
    readonly field: string,
    readonly rule: string,
  ) {
    super(`audit entry rejected: ${field} ${rule}`);
    this.name = 'AuditInputError';
  }
}
