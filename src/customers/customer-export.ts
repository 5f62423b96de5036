import { auditEntriesAbout } from '../audit/audit-dal';
import type { AuditDetails, AuditEntry } from '../audit/audit-types';
import type { Envelope } from '../crypto/envelope';
import type { CustomerRow, Db } from '../db/database';
import { consentsInForce, listConsents, type ConsentRecord } from './customer-consents';
import { openProfile } from './customer-crypto';
import type { CustomerProfile } from './customer-types';

/** One event of the audit trail as the customer sees it. */
export interface ExportedEvent {
  readonly at: string;
  readonly action: string;
  /** Who: a service identity or operator pseudonym (audit-actor.ts), or the workflow that acted. */
  readonly actor: string;
  /** Why, as the caller stated it (Ledgerlock-Purpose), where there was a caller. */
  readonly purpose: string | null;
  readonly details: AuditDetails;
}

/**
 * Everything Ledgerlock holds about a customer (GDPR art. 15), in one document. Built from
 * PostgreSQL only: the tables outlive workflow histories (which Temporal keeps for its
 * retention period) and hold the same facts, as ids, codes, amounts and times.
 */
export interface SubjectAccessExport {
  readonly format: 'ledgerlock.subject-access-export.v1';
  readonly exportedAt: string;
  readonly customer: {
    readonly id: string;
    readonly status: string;
    readonly region: string;
    readonly country: string;
    readonly stripeCustomerId: string | null;
    readonly createdAt: string;
    readonly profile: CustomerProfile;
  };
  readonly subscriptions: readonly {
    readonly id: string;
    readonly priceId: string;
    readonly status: string;
    readonly sagaStep: string;
    readonly stripeSubscriptionId: string | null;
    readonly cancelAtPeriodEnd: boolean;
    readonly failure: { readonly type: string | null; readonly reason: string | null } | null;
    readonly createdAt: string;
    readonly updatedAt: string;
    readonly entitlements: readonly { readonly priceId: string; readonly grantedAt: string; readonly revokedAt: string | null }[];
    readonly stripeEvents: readonly { readonly eventId: string; readonly type: string; readonly createdAt: string; readonly receivedAt: string; readonly status: string }[];
    /** The saga's steps, compensations, cancellations, refunds and dunning actions, as audited. */
    readonly history: readonly ExportedEvent[];
  }[];
  readonly dunning: {
    readonly campaigns: readonly { readonly subscriptionId: string; readonly invoiceId: string; readonly startedAt: string; readonly lastAction: string; readonly history: readonly ExportedEvent[] }[];
    readonly notices: readonly { readonly id: string; readonly subscriptionId: string; readonly invoiceId: string; readonly template: string; readonly status: string; readonly createdAt: string; readonly sentAt: string | null }[];
  };
  readonly refunds: readonly { readonly subscriptionId: string; readonly at: string; readonly invoiceId: string | null; readonly refundId: string | null; readonly amount: number | null; readonly currency: string | null }[];
  readonly consents: { readonly inForce: Partial<Record<string, ConsentRecord>>; readonly records: readonly ConsentRecord[] };
  /** Every access to the customer's data and every action on it: who, when, why. */
  readonly accessLog: readonly ExportedEvent[];
}

const event = (entry: AuditEntry): ExportedEvent => ({ at: entry.occurredAt, action: entry.action, actor: entry.actor, purpose: entry.purpose, details: entry.details });
const str = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/**
 * The export of a customer whose data keys still exist (the caller checked they are not
 * erased, and audited the export before calling: the profile is decrypted here).
 */
export async function buildSubjectAccessExport(deps: { readonly db: Db; readonly envelope: Envelope }, row: CustomerRow): Promise<SubjectAccessExport> {
  const { db } = deps;
  const subscriptions = await db.selectFrom('subscriptions').selectAll().where('customer_id', '=', row.id).orderBy('created_at').execute();
  const subscriptionIds = subscriptions.map((s) => s.id);
  const [profile, entitlements, stripeEvents, notices, consents, entries] = await Promise.all([
    openProfile(deps.envelope, row),
    db.selectFrom('entitlements').selectAll().where('customer_id', '=', row.id).orderBy('granted_at').execute(),
    subscriptionIds.length === 0
      ? Promise.resolve([])
      : db.selectFrom('stripe_events').select(['event_id', 'type', 'event_created', 'received_at', 'status', 'subscription_id']).where('subscription_id', 'in', subscriptionIds).orderBy('event_created').execute(),
    db.selectFrom('notification_outbox').select(['id', 'subscription_id', 'invoice_id', 'template', 'status', 'created_at', 'sent_at']).where('customer_id', '=', row.id).orderBy('created_at').execute(),
    listConsents(db, row.id),
    auditEntriesAbout(db, [
      { type: 'customer', ids: [row.id] },
      { type: 'subscription', ids: subscriptionIds },
    ]),
  ]);
  const about = (subscriptionId: string) => entries.filter((e) => e.subjectType === 'subscription' && e.subjectId === subscriptionId);

  const campaigns = new Map<string, { subscriptionId: string; invoiceId: string; history: ExportedEvent[] }>();
  for (const entry of entries) {
    const invoiceId = str(entry.details.invoiceId);
    if (entry.subjectType !== 'subscription' || !entry.action.startsWith('dunning.') || !invoiceId) continue;
    const key = `${entry.subjectId}:${invoiceId}`;
    const campaign = campaigns.get(key) ?? { subscriptionId: entry.subjectId, invoiceId, history: [] };
    campaign.history.push(event(entry));
    campaigns.set(key, campaign);
  }

  return {
    format: 'ledgerlock.subject-access-export.v1',
    exportedAt: new Date().toISOString(),
    customer: { id: row.id, status: row.status, region: row.region, country: row.country, stripeCustomerId: row.stripe_customer_id, createdAt: row.created_at.toISOString(), profile },
    subscriptions: subscriptions.map((s) => ({
      id: s.id,
      priceId: s.price_id,
      status: s.status,
      sagaStep: s.saga_step,
      stripeSubscriptionId: s.stripe_subscription_id,
      cancelAtPeriodEnd: s.cancel_at_period_end,
      failure: s.failure_type || s.failure_reason ? { type: s.failure_type, reason: s.failure_reason } : null,
      createdAt: s.created_at.toISOString(),
      updatedAt: s.updated_at.toISOString(),
      entitlements: entitlements
        .filter((e) => e.subscription_id === s.id)
        .map((e) => ({ priceId: e.price_id, grantedAt: e.granted_at.toISOString(), revokedAt: e.revoked_at?.toISOString() ?? null })),
      stripeEvents: stripeEvents
        .filter((e) => e.subscription_id === s.id)
        .map((e) => ({ eventId: e.event_id, type: e.type, createdAt: e.event_created.toISOString(), receivedAt: e.received_at.toISOString(), status: e.status })),
      history: about(s.id).map(event),
    })),
    dunning: {
      campaigns: [...campaigns.values()].map((c) => ({ ...c, startedAt: c.history[0]!.at, lastAction: c.history.at(-1)!.action })),
      notices: notices.map((n) => ({
        id: n.id,
        subscriptionId: n.subscription_id,
        invoiceId: n.invoice_id,
        template: n.template,
        status: n.status,
        createdAt: n.created_at.toISOString(),
        sentAt: n.sent_at?.toISOString() ?? null,
      })),
    },
    refunds: entries
      .filter((e) => e.action === 'subscription.refund')
      .map((e) => ({
        subscriptionId: e.subjectId,
        at: e.occurredAt,
        invoiceId: str(e.details.invoiceId),
        refundId: str(e.details.refundId),
        amount: typeof e.details.amount === 'number' ? e.details.amount : null,
        currency: str(e.details.currency),
      })),
    consents: { inForce: consentsInForce(consents), records: consents },
    accessLog: entries.filter((e) => e.subjectType === 'customer').map(event),
  };
}
