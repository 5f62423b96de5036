/** The customer workflows' contract. Persisted in histories: append only, never rename. */

/** One erasure per customer: DELETE /v1/customers/:id and retention start the same workflow. */
export function erasureWorkflowId(customerId: string): string {
  return `customer-erasure:${customerId}`;
}

/** The daily schedule that erases customers past their retention period, and its workflows' id prefix. */
export const CUSTOMER_RETENTION_SCHEDULE_ID = 'customer-retention';

/** The reason retention erasures are audited with (`customer.erased`, purpose). */
export const RETENTION_ERASURE_REASON = 'retention';

export interface CustomerRetentionInput {
  /** Audit actor: the schedule says `schedule:customer-retention`. */
  readonly requestedBy: string;
  /** When this retention run began (ISO 8601); kept across continue-as-new so every page is judged by one cutoff. */
  readonly asOf?: string;
  /** Resume after this customer id (continue-as-new). */
  readonly afterId?: string;
  /** Customers asked for per page (default 100): smaller pages keep each activity short. */
  readonly pageSize?: number;
  /** Erasures this run started before continuing as new. */
  readonly erasuresStarted?: number;
}

export interface CustomerRetentionResult {
  readonly asOf: string;
  /** Erasure workflows started by this run (a customer whose erasure already ran or runs is not counted). */
  readonly erasuresStarted: number;
}
