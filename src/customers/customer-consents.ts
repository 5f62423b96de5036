import { z } from 'zod';
import type { CustomerConsentRow, Db } from '../db/database';

/**
 * What a customer may consent to. Declared, never free text: a purpose nobody declared has no
 * code honouring it. `notifications` covers the e-mails Ledgerlock sends beyond what the
 * contract needs (see {@link CONTRACTUAL_NOTICE_TEMPLATES}).
 */
export const CONSENT_PURPOSES = ['notifications', 'marketing', 'analytics'] as const;
export type ConsentPurpose = (typeof CONSENT_PURPOSES)[number];

/**
 * Notices the contract itself requires (GDPR art. 6(1)(b)): a payment that failed and what
 * follows from it. They go out whatever the customer said about `notifications`; every
 * other template needs that consent not to be withdrawn.
 */
export const CONTRACTUAL_NOTICE_TEMPLATES: readonly string[] = ['payment_failed', 'payment_retry_failed'];

export const consentInputSchema = z
  .object({
    purpose: z.enum(CONSENT_PURPOSES),
    granted: z.boolean(),
    /** Where it was collected, as a code (`web:signup-form:v3`), so no personal data rides along. */
    source: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._:-]{0,63}$/, 'must be a code of 1 to 64 lower-case letters, digits or . _ : - (e.g. web:signup-form:v3), never free text'),
  })
  .strict();
export type ConsentInput = z.infer<typeof consentInputSchema>;

export interface ConsentRecord {
  readonly id: string;
  readonly purpose: ConsentPurpose;
  readonly granted: boolean;
  readonly source: string;
  readonly recordedBy: string;
  readonly recordedAt: string;
}

export function toConsentRecord(row: CustomerConsentRow): ConsentRecord {
  return { id: row.id, purpose: row.purpose as ConsentPurpose, granted: row.granted, source: row.source, recordedBy: row.recorded_by, recordedAt: row.recorded_at.toISOString() };
}

/** Whether a stored record says what `input` says (a retry of the same request). */
export function sameConsent(row: CustomerConsentRow, customerId: string, input: ConsentInput): boolean {
  return row.customer_id === customerId && row.purpose === input.purpose && row.granted === input.granted && row.source === input.source;
}

export function findConsent(db: Db, id: string): Promise<CustomerConsentRow | undefined> {
  return db.selectFrom('customer_consents').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Appends a record; a record of that id already there is left as it is (the caller compares). */
export async function appendConsent(db: Db, record: { id: string; customerId: string; recordedBy: string } & ConsentInput): Promise<CustomerConsentRow> {
  await db
    .insertInto('customer_consents')
    .values({ id: record.id, customer_id: record.customerId, purpose: record.purpose, granted: record.granted, source: record.source, recorded_by: record.recordedBy })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  return (await findConsent(db, record.id))!;
}

/** Every record of a customer, oldest first. */
export async function listConsents(db: Db, customerId: string): Promise<ConsentRecord[]> {
  const rows = await db.selectFrom('customer_consents').selectAll().where('customer_id', '=', customerId).orderBy('seq').execute();
  return rows.map(toConsentRecord);
}

/** The record in force per purpose: the newest one. A purpose never recorded is absent. */
export function consentsInForce(records: readonly ConsentRecord[]): Partial<Record<ConsentPurpose, ConsentRecord>> {
  const inForce: Partial<Record<ConsentPurpose, ConsentRecord>> = {};
  for (const record of records) inForce[record.purpose] = record;
  return inForce;
}

/**
 * Whether a notice of `template` may go to the customer: a contractual one always, any
 * other unless the newest `notifications` record withdrew consent. Notices predate consent
 * records, so no record at all means allowed, as before.
 */
export async function noticeAllowed(db: Db, customerId: string, template: string): Promise<boolean> {
  if (CONTRACTUAL_NOTICE_TEMPLATES.includes(template)) return true;
  const newest = await db
    .selectFrom('customer_consents')
    .select('granted')
    .where('customer_id', '=', customerId)
    .where('purpose', '=', 'notifications')
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return newest?.granted ?? true;
}
