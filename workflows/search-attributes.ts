import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * The search attributes workflow code sets, and the server registers (src/temporal/search-attributes.ts
 * derives the dev server's and `temporal operator`'s arguments from these). Opaque ids and
 * states only: search attributes are not encrypted.
 */
export const WORKFLOW_SEARCH_ATTRIBUTES = {
  CustomerId: defineSearchAttributeKey('CustomerId', SearchAttributeType.KEYWORD),
  SubscriptionId: defineSearchAttributeKey('SubscriptionId', SearchAttributeType.KEYWORD),
  BillingStatus: defineSearchAttributeKey('BillingStatus', SearchAttributeType.KEYWORD),
  SagaStep: defineSearchAttributeKey('SagaStep', SearchAttributeType.KEYWORD),
  DunningAttempt: defineSearchAttributeKey('DunningAttempt', SearchAttributeType.INT),
  DunningState: defineSearchAttributeKey('DunningState', SearchAttributeType.KEYWORD),
} as const;
