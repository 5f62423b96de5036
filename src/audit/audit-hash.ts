import { createHash } from 'node:crypto';
import type { AuditDetails } from './audit-types';

/** What an entry's hash covers: its content, named as its columns are. Not seq: the chain orders entries. */
export interface AuditContent {
  readonly idempotency_key: string;
  /** ISO 8601, UTC, millisecond precision: what `Date#toISOString` gives. */
  readonly occurred_at: string;
  readonly actor: string;
  readonly action: string;
  readonly subject_type: string;
  readonly subject_id: string;
  readonly purpose: string | null;
  readonly details: AuditDetails;
}

/** The `prev_hash` of the first entry. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * JSON with object keys sorted (by UTF-16 code unit) at every depth, so the same content
 * always hashes the same however jsonb reordered it. Undefined members are left out, as
 * JSON.stringify does.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const members = Object.keys(value)
      .sort()
      .filter((key) => (value as Record<string, unknown>)[key] !== undefined)
      .map((key) => `${JSON.stringify(key)}:${canonicalJson((value as Record<string, unknown>)[key])}`);
    return `{${members.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** Hex SHA-256 of `prevHash`, a newline and the canonical JSON of the content. */
export function auditHash(prevHash: string, content: AuditContent): string {
  // Picked field by field: a database row or an input object may carry more.
  const covered: AuditContent = {
    idempotency_key: content.idempotency_key,
    occurred_at: content.occurred_at,
    actor: content.actor,
    action: content.action,
    subject_type: content.subject_type,
    subject_id: content.subject_id,
    purpose: content.purpose,
    details: content.details,
  };
  return createHash('sha256').update(`${prevHash}\n${canonicalJson(covered)}`, 'utf8').digest('hex');
}
