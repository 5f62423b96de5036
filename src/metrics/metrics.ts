import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Ledgerlock's metrics: one registry per process, served by the metrics server
 * (src/metrics/metrics-server.ts) beside the Temporal SDK's own `temporal_` metrics.
 *
 * Every label is a bounded enum: a saga, a step (an activity name), an operation, an
 * outcome, a reason from a fixed list. Never an id, an email, a token or a message: a
 * label value is kept by Prometheus for weeks and shown to anyone with a dashboard.
 * Values that come from outside (a Stripe path, a failure type) go through
 * {@link boundedLabel} first.
 */
export const registry = new Registry();

// The process's own: RSS, CPU, event-loop lag, heap. Unprefixed, as every Node dashboard expects them.
collectDefaultMetrics({ register: registry });

const registers = [registry];

export const SAGAS = ['subscription', 'customer_registration', 'erasure', 'dunning', 'key_rotation'] as const;
export type SagaName = (typeof SAGAS)[number];

/** The workflow types that run a saga, and the saga each is. The long-lived subscription entity is not one. */
export const SAGA_OF_WORKFLOW: Readonly<Record<string, SagaName>> = {
  createSubscriptionWorkflow: 'subscription',
  registerCustomerWorkflow: 'customer_registration',
  eraseCustomerWorkflow: 'erasure',
  dunningWorkflow: 'dunning',
  keyRotationWorkflow: 'key_rotation',
};

export const sagaStarted = new Counter({
  name: 'ledgerlock_saga_started_total',
  help: 'Sagas that started executing, by saga.',
  labelNames: ['saga'],
  registers,
});

export const sagaCompleted = new Counter({
  name: 'ledgerlock_saga_completed_total',
  help: 'Sagas that completed every step, by saga.',
  labelNames: ['saga'],
  registers,
});

export const sagaCompensated = new Counter({
  name: 'ledgerlock_saga_compensated_total',
  help: 'Sagas that ran their compensations, by saga and reason (the failure type that made them undo).',
  labelNames: ['saga', 'reason'],
  registers,
});

export const sagaFailed = new Counter({
  name: 'ledgerlock_saga_failed_total',
  help: 'Sagas that failed with nothing to compensate (or whose compensation failed), by saga and reason.',
  labelNames: ['saga', 'reason'],
  registers,
});

export const sagaStepDuration = new Histogram({
  name: 'ledgerlock_saga_step_duration_seconds',
  help: 'Duration of one attempt of a saga step (an activity), by saga, step and outcome (ok, failed).',
  labelNames: ['saga', 'step', 'outcome'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
  registers,
});

export const stripeCalls = new Counter({
  name: 'ledgerlock_stripe_calls_total',
  help: 'Stripe API requests answered, by operation (method and path template) and outcome.',
  labelNames: ['operation', 'outcome'],
  registers,
});

export const stripeRateLimited = new Counter({
  name: 'ledgerlock_stripe_rate_limited_total',
  help: 'Stripe API requests answered 429 Too Many Requests, by operation.',
  labelNames: ['operation'],
  registers,
});

export const stripeCallDuration = new Histogram({
  name: 'ledgerlock_stripe_call_duration_seconds',
  help: 'Stripe API request latency, by operation.',
  labelNames: ['operation'],
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20],
  registers,
});

export const kmsCalls = new Counter({
  name: 'ledgerlock_kms_calls_total',
  help: 'KMS API calls, by operation (GenerateDataKey, Decrypt, ...) and outcome (ok, throttled, error).',
  labelNames: ['operation', 'outcome'],
  registers,
});

export const dataKeyCacheHits = new Counter({
  name: 'ledgerlock_data_key_cache_hits_total',
  help: 'Plaintext data keys found in the in-memory cache.',
  registers,
});

export const dataKeyCacheMisses = new Counter({
  name: 'ledgerlock_data_key_cache_misses_total',
  help: 'Plaintext data keys not in the cache (unwrapped through KMS instead).',
  registers,
});

export const WEBHOOK_REFUSALS = ['signature', 'malformed_json', 'not_an_event', 'malformed_event', 'body_too_large', 'unreadable_body'] as const;
export type WebhookRefusal = (typeof WEBHOOK_REFUSALS)[number];

export const webhooks = new Counter({
  name: 'ledgerlock_webhooks_total',
  help: 'Stripe webhooks received, by outcome (accepted, duplicate, refused) and reason (of a refusal; "none" otherwise). Rate-limited ones count in ledgerlock_rate_limit_refusals_total{class="source"}.',
  labelNames: ['outcome', 'reason'],
  registers,
});

export const relayDeliveries = new Counter({
  name: 'ledgerlock_webhook_relay_deliveries_total',
  help: 'Recorded Stripe events the relay tried to signal to their workflow, by outcome (delivered, retry, undeliverable).',
  labelNames: ['outcome'],
  registers,
});

export const DUNNING_STATES = ['started', 'suspended', 'recovered', 'canceled', 'unpaid', 'past_due', 'stopped'] as const;
export type DunningMetricState = (typeof DUNNING_STATES)[number];

export const dunningCampaigns = new Counter({
  name: 'ledgerlock_dunning_campaigns_total',
  help: 'Dunning campaigns reaching a state: started, suspended, escalated (canceled, unpaid, past_due), recovered or stopped; counted once per campaign and state.',
  labelNames: ['state'],
  registers,
});

export const dunningRecovered = new Counter({
  name: 'ledgerlock_dunning_recovered_amount_total',
  help: "Invoice amounts recovered by dunning's payment retries, in the currency's minor units, by currency.",
  labelNames: ['currency'],
  registers,
});

export const keyRotationDataKeys = new Counter({
  name: 'ledgerlock_key_rotation_data_keys_total',
  help: 'Data keys handled by key rotations, by phase (rewrapped, verified).',
  labelNames: ['phase'],
  registers,
});

export const auditAppends = new Counter({
  name: 'ledgerlock_audit_appends_total',
  help: 'Audit trail appends, by outcome (appended, duplicate: the idempotency key was already recorded).',
  labelNames: ['outcome'],
  registers,
});

export const auditVerifyFailures = new Counter({
  name: 'ledgerlock_audit_verify_failures_total',
  help: 'Tamperings found by audit verification, by kind.',
  labelNames: ['kind'],
  registers,
});

export const TOKEN_REFUSALS = ['missing', 'malformed', 'expired', 'bad_signature', 'claims', 'unknown_key', 'invalid'] as const;
export type TokenRefusal = (typeof TOKEN_REFUSALS)[number];

export const tokenRefusals = new Counter({
  name: 'ledgerlock_token_refusals_total',
  help: 'Bearer tokens refused (API and codec server), by reason.',
  labelNames: ['reason'],
  registers,
});

export const rateLimitRefusals = new Counter({
  name: 'ledgerlock_rate_limit_refusals_total',
  help: 'Requests refused 429 by a rate limit, by limit class (read, write, erase, export, source).',
  labelNames: ['class'],
  registers,
});

export const relayPending = new Gauge({
  name: 'ledgerlock_webhook_relay_pending',
  help: 'Recorded Stripe events not yet delivered to their workflow (from PostgreSQL, shared by every API process).',
  registers,
});

export const relayLag = new Gauge({
  name: 'ledgerlock_webhook_relay_lag_seconds',
  help: 'Age of the oldest Stripe event still waiting for delivery; 0 when none waits.',
  registers,
});

export const keyRotationRunning = new Gauge({
  name: 'ledgerlock_key_rotation_running',
  help: 'Key rotations running now (0 or 1).',
  registers,
});

export const keyRotationProgress = new Gauge({
  name: 'ledgerlock_key_rotation_progress_ratio',
  help: 'Of the running rotation: data keys rewrapped and verified, as a fraction of its total (by phase); 1 when none runs.',
  labelNames: ['phase'],
  registers,
});

export const keyRotationsFinished = new Gauge({
  name: 'ledgerlock_key_rotations',
  help: 'Key rotations recorded in PostgreSQL, by status (running, completed, failed).',
  labelNames: ['status'],
  registers,
});

export const metricsCollectErrors = new Counter({
  name: 'ledgerlock_metrics_collect_errors_total',
  help: 'Scrapes whose PostgreSQL-backed gauges could not be read (the gauges keep their last value).',
  registers,
});

const BOUNDED = /^[A-Za-z][A-Za-z0-9_.:-]{0,63}$/;

/** `value` when it looks like a name of ours (letters, digits, `_.:-`, at most 64), else `other`. */
export function boundedLabel(value: unknown): string {
  return typeof value === 'string' && BOUNDED.test(value) ? value : 'other';
}

/** `value` if it is one of `allowed`, else `other`. */
export function oneOf<T extends string>(allowed: readonly T[], value: unknown): T | 'other' {
  return allowed.includes(value as T) ? (value as T) : 'other';
}

/** An ISO 4217 code, lower case as Stripe writes it: a bounded set; anything else is `other`. */
export function currencyLabel(currency: unknown): string {
  return typeof currency === 'string' && /^[a-z]{3}$/.test(currency) ? currency : 'other';
}

/** Prometheus text of this process's registry. */
export function ledgerlockMetricsText(): Promise<string> {
  return registry.metrics();
}
