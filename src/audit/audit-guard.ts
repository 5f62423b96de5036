import type { AuditContent } from './audit-hash';
import { AuditInputError, type AuditDetailValue, type AuditEntryInput } from './audit-types';

/**
 * Checks an entry before anything is written and returns its content as it will be
 * stored and hashed. Audit rows outlive erasure requests, so they must never hold
 * personal data: anything shaped like an email address is refused, and values are short
 * opaque ids. Inputs come from workflows at run time, so types are checked, not trusted.
 */

const MAX_VALUE_LENGTH = 200;
// Workflow ids (part of the key) may be long; the column is unique-indexed, so still bounded.
const MAX_IDEMPOTENCY_KEY_LENGTH = 512;
const MAX_DETAILS = 32;
const EMAIL = /[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}/i;
// PostgreSQL refuses NUL in text and jsonb; the rest has no business in an id.
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;
const ACTION = /^[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)+$/;
const SUBJECT_TYPE = /^[a-z][a-z0-9_-]*$/;
const DETAIL_KEY = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})$/;

export function normaliseAuditInput(input: AuditEntryInput, now: Date): AuditContent {
  if (input === null || typeof input !== 'object') throw new AuditInputError('entry', 'must be an object');
  return {
    idempotency_key: text('idempotencyKey', input.idempotencyKey, { max: MAX_IDEMPOTENCY_KEY_LENGTH }),
    occurred_at: occurredAt(input.occurredAt, now),
    actor: text('actor', input.actor),
    action: text('action', input.action, { pattern: ACTION, shape: 'dotted lower-case words, e.g. customer.read' }),
    subject_type: text('subjectType', input.subjectType, { pattern: SUBJECT_TYPE, shape: 'a lower-case word, e.g. customer' }),
    subject_id: text('subjectId', input.subjectId),
    purpose: input.purpose === undefined || input.purpose === null ? null : text('purpose', input.purpose),
    details: details(input.details),
  };
}

interface TextRule {
  readonly max?: number;
  readonly allowEmpty?: boolean;
  readonly pattern?: RegExp;
  readonly shape?: string;
}

function text(field: string, value: unknown, rule: TextRule = {}): string {
  const max = rule.max ?? MAX_VALUE_LENGTH;
  if (typeof value !== 'string') throw new AuditInputError(field, 'must be a string');
  if (value === '' && !rule.allowEmpty) throw new AuditInputError(field, 'must not be empty');
  if (value.length > max) throw new AuditInputError(field, `is longer than ${max} characters`);
  if (CONTROL_CHARACTER.test(value)) throw new AuditInputError(field, 'contains a control character');
  if (EMAIL.test(value)) throw new AuditInputError(field, 'looks like an email address: audit entries take opaque ids only');
  if (rule.pattern && !rule.pattern.test(value)) throw new AuditInputError(field, `must be ${rule.shape ?? 'well formed'}`);
  return value;
}

function occurredAt(value: unknown, now: Date): string {
  if (value === undefined) return now.toISOString();
  if (typeof value !== 'string' || !ISO_8601.test(value) || Number.isNaN(Date.parse(value))) {
    throw new AuditInputError('occurredAt', 'must be an ISO 8601 date-time with a time zone');
  }
  // Milliseconds, UTC: what timestamptz stores and `toISOString` reads back, so the hash round-trips.
  return new Date(value).toISOString();
}

function details(value: unknown): Record<string, AuditDetailValue> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new AuditInputError('details', 'must be an object');
  const entries = Object.entries(value);
  if (entries.length > MAX_DETAILS) throw new AuditInputError('details', `has more than ${MAX_DETAILS} members`);
  const out: Record<string, AuditDetailValue> = {};
  for (const [key, item] of entries) {
    if (!DETAIL_KEY.test(key)) throw new AuditInputError('details', 'has a member name that is not a short identifier');
    out[key] = detailValue(`details.${key}`, item);
  }
  return out;
}

function detailValue(field: string, value: unknown): AuditDetailValue {
  if (value === null || typeof value === 'boolean') return value;
  // JSON has no NaN or Infinity: they would be stored as null and break the hash.
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new AuditInputError(field, 'must be a finite number');
    return value;
  }
  if (typeof value === 'string') return text(field, value, { allowEmpty: true });
  throw new AuditInputError(field, 'must be a string, number, boolean or null');
}
