import { createHash, createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Request } from 'express';
import { z } from 'zod';
import type { DataKeys } from '../crypto/data-keys';
import type { Db } from '../db/database';
import { HttpProblem } from './problem';

export const IDEMPOTENCY_KEY_HEADER = 'Idempotency-Key';

/** The caller's Idempotency-Key, or a 400 naming the header. */
export function idempotencyKeyOf(req: Request): string {
  return requiredHeader(req, IDEMPOTENCY_KEY_HEADER, z.string().min(1).max(255));
}

/** A header's value, or a 400 problem naming it. */
export function requiredHeader(req: Request, header: string, schema: z.ZodType<string>): string {
  const parsed = schema.safeParse(req.header(header));
  if (!parsed.success) {
    throw new HttpProblem({
      title: 'Invalid request',
      status: 400,
      detail: `The ${header} header is missing or invalid.`,
      errors: [{ field: `header.${header}`, message: parsed.error.issues[0]?.message ?? 'required' }],
    });
  }
  return parsed.data;
}

/** A header's value, undefined when absent, or a 400 problem naming it when invalid. */
export function optionalHeader(req: Request, header: string, schema: z.ZodType<string>): string | undefined {
  return req.header(header) === undefined ? undefined : requiredHeader(req, header, schema);
}

/**
 * The caller's `X-Request-Id`, for correlating logs and audit entries: a detail only, never
 * a key, since the caller chooses it.
 */
export function requestIdOf(req: Request): string | undefined {
  return optionalHeader(req, 'X-Request-Id', z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1 to 128 letters, digits or . _ : -'));
}

/**
 * An opaque id derived from the caller and their Idempotency-Key: a retried request names
 * the same resource, hence the same workflow id, hence the same saga.
 */
export function idFor(prefix: string, caller: string, idempotencyKey: string): string {
  return `${prefix}${createHash('sha256').update(`${prefix}\n${caller}\n${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

/**
 * Records what a request with this Idempotency-Key said, or checks a retry against it.
 *
 * The fingerprint is an HMAC of the canonical body under the customer's own data key: a
 * retry with another body is detected, yet the stored value reveals nothing of the personal
 * data in it and becomes meaningless once the customer is crypto-shredded.
 *
 * @returns 'first' for a new key, 'retry' for the same body again; throws a 409 problem
 * for the same key with another body.
 */
export async function claimIdempotencyKey(
  deps: { readonly db: Db; readonly dataKeys: DataKeys },
  claim: { caller: string; idempotencyKey: string; dataKeyId: string; body: unknown; workflowId: string },
): Promise<'first' | 'retry'> {
  const key = await deps.dataKeys.key(claim.dataKeyId);
  const { outcome } = await claimWithHash(deps.db, { ...claim, requestHash: `${claim.dataKeyId}:${fingerprint(key, claim.body)}` });
  return outcome;
}

/**
 * {@link claimIdempotencyKey} for a request that carries no personal data (ids and amounts,
 * as a refund), fingerprinted with plain SHA-256, and that keeps its answer: a retry gets
 * back the `response` stored by {@link recordIdempotentResponse}, null until then.
 *
 * @throws HttpProblem 409 for the same key with another request, on this route or any other.
 */
export async function claimIdempotencyKeyOfIds(
  db: Db,
  claim: { caller: string; idempotencyKey: string; body: unknown; workflowId: string },
): Promise<{ outcome: 'first' | 'retry'; response: unknown }> {
  return claimWithHash(db, { ...claim, requestHash: `sha256:${createHash('sha256').update(canonical(claim.body)).digest('hex')}` });
}

/** Keeps the answer to a claimed key, for every retry from now on. */
export async function recordIdempotentResponse(db: Db, claim: { caller: string; idempotencyKey: string }, response: unknown): Promise<void> {
  await db
    .updateTable('api_idempotency_keys')
    .set({ response: JSON.stringify(response) })
    .where('caller', '=', claim.caller)
    .where('idempotency_key', '=', claim.idempotencyKey)
    .execute();
}

async function claimWithHash(
  db: Db,
  claim: { caller: string; idempotencyKey: string; requestHash: string; workflowId: string },
): Promise<{ outcome: 'first' | 'retry'; response: unknown }> {
  const inserted = await db
    .insertInto('api_idempotency_keys')
    .values({ caller: claim.caller, idempotency_key: claim.idempotencyKey, request_hash: claim.requestHash, workflow_id: claim.workflowId })
    .onConflict((oc) => oc.columns(['caller', 'idempotency_key']).doNothing())
    .returning('id')
    .executeTakeFirst();
  if (inserted) return { outcome: 'first', response: null };
  const previous = await db
    .selectFrom('api_idempotency_keys')
    .select(['request_hash', 'workflow_id', 'response'])
    .where('caller', '=', claim.caller)
    .where('idempotency_key', '=', claim.idempotencyKey)
    .executeTakeFirstOrThrow();
  if (previous.workflow_id !== claim.workflowId || !sameFingerprint(previous.request_hash, claim.requestHash)) {
    throw new HttpProblem({ title: 'Idempotency-Key reused', status: 409, detail: `This ${IDEMPOTENCY_KEY_HEADER} was used with a different request.` });
  }
  return { outcome: 'retry', response: previous.response ?? null };
}

function fingerprint(key: KeyObject, body: unknown): string {
  return createHmac('sha256', key).update(canonical(body)).digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function sameFingerprint(stored: string, computed: string): boolean {
  const a = Buffer.from(stored);
  const b = Buffer.from(computed);
  return a.length === b.length && timingSafeEqual(a, b);
}
