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

function cliType(type: SearchAttributeType): string {
  return type === SearchAttributeType.INT ? 'Int' : 'Keyword';
}

/** `--search-attribute` values for `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  return Object.values(SEARCH_ATTRIBUTES).flatMap((key) => ['--search-attribute', `${key.name}=${cliType(key.type)}`]);
}

/**
 * `--name K --type T` pairs for `temporal operator search-attribute create`, which
 * deploy/temporal-namespace.sh runs against a full Temporal server (docker-compose and
 * `LEDGERLOCK_TEMPORAL=server` alike).
 */
export function operatorSearchAttributeArgs(): string[] {
  return Object.values(SEARCH_ATTRIBUTES).flatMap((key) => ['--name', key.name, '--type', cliType(key.type)]);
}
