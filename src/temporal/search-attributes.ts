import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * The custom search attributes operators filter on in the Web UI. They are not encrypted,
 * so only opaque ids and states go here, never personal data. Their names are persisted in
 * the cluster: treat them as public API.
 */
export const SEARCH_ATTRIBUTES = {
  CustomerId: defineSearchAttributeKey('CustomerId', SearchAttributeType.KEYWORD),
  SubscriptionId: defineSearchAttributeKey('SubscriptionId', SearchAttributeType.KEYWORD),
  BillingStatus: defineSearchAttributeKey('BillingStatus', SearchAttributeType.KEYWORD),
  SagaStep: defineSearchAttributeKey('SagaStep', SearchAttributeType.KEYWORD),
  DunningAttempt: defineSearchAttributeKey('DunningAttempt', SearchAttributeType.INT),
  DunningState: defineSearchAttributeKey('DunningState', SearchAttributeType.KEYWORD),
} as const;

/** `--search-attribute` values for `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  return Object.values(SEARCH_ATTRIBUTES).flatMap((key) => [
    '--search-attribute',
    `${key.name}=${key.type === SearchAttributeType.INT ? 'Int' : 'Keyword'}`,
  ]);
}
