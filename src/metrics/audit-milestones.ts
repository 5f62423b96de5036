import type { AuditEntryInput } from '../audit/audit-types';
import { dunningCampaigns, keyRotationDataKeys, type DunningMetricState } from './metrics';

const DUNNING_FINAL: Readonly<Record<string, DunningMetricState>> = { cancel: 'canceled', mark_unpaid: 'unpaid', leave_past_due: 'past_due' };

/**
 * The metrics an audited workflow milestone moves. Workflows audit every milestone through
 * the `recordAudit` activity under an idempotency key of their own, so counting only what
 * was appended (never a duplicate of a retried attempt or a replayed workflow) counts each
 * milestone exactly once.
 */
export function countAuditedMilestone(entry: Pick<AuditEntryInput, 'action' | 'details' | 'idempotencyKey'>): void {
  const step = typeof entry.details?.step === 'string' ? entry.details.step : nameIn(entry.idempotencyKey, entry.action);
  switch (entry.action) {
    case 'dunning.started':
      return void dunningCampaigns.inc({ state: 'started' });
    case 'dunning.suspend':
      return void dunningCampaigns.inc({ state: 'suspended' });
    case 'dunning.recovered':
      return void dunningCampaigns.inc({ state: 'recovered' });
    case 'dunning.stopped':
      return void dunningCampaigns.inc({ state: 'stopped' });
    case 'dunning.final': {
      const state = step ? DUNNING_FINAL[step] : undefined;
      if (state) dunningCampaigns.inc({ state });
      return;
    }
    case 'key.rotation': {
      const phase = step?.split(':')[0];
      const count = Number(entry.details?.dataKeys);
      if ((phase === 'rewrapped' || phase === 'verified') && Number.isFinite(count) && count > 0) keyRotationDataKeys.inc({ phase }, count);
      return;
    }
  }
}

/** Workflows key an entry `<workflow id>:<action>:<name>`: the name after the action. */
function nameIn(idempotencyKey: string, action: string): string | undefined {
  const at = idempotencyKey.lastIndexOf(`:${action}:`);
  return at < 0 ? undefined : idempotencyKey.slice(at + action.length + 2);
}
