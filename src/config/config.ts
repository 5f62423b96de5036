import path from 'node:path';
import { z } from 'zod';
import { stripeIdPattern } from '../stripe/stripe-ids';
import type { DataKeyCacheLimits } from '../crypto/key-cache';
import { buildDunningPolicies, parseJsonVariable, policyOverrideSchema, type DunningPolicies, type PolicyOverride } from '../dunning/dunning-policy';

/**
 * The one place that reads the environment. `loadConfig` validates every variable at
 * once and throws a {@link ConfigError} naming each bad one, so a misconfigured process
 * fails at start rather than on its first request.
 *
 * Two modes:
 * - `local` (default): every dependency has an embedded development value, marked
 *   "local only" below; `npm start` runs the Temporal dev server, stripe-mock and a local KMS for them.
 * - `production`: no secret and no endpoint has a default; whatever is missing is an error.
 */

/** A value that is only acceptable on a developer's machine, against the local servers. */
export const LOCAL_ONLY_STRIPE_KEY = 'sk_test_LedgerlockLocalOnly';

const port = z.coerce.number().int().min(1).max(65535);
const optionalUrl = z.url().optional();
// Parsed as a URL too: the local app URL is derived from the owner's with `new URL`, which would throw (and echo it) otherwise.
const postgresUrl = z
  .string()
  .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL')
  .refine((value) => URL.canParse(value), 'must be a postgres:// URL');

/** Every variable Ledgerlock reads, with what it means: the README table and compose test use this. */
export const ENV_DOCS = {
  LEDGERLOCK_MODE: '`local` (default) runs the embedded servers; `production` requires every endpoint and secret',
  LEDGERLOCK_DATA_DIR: 'local state: Temporal SQLite file, local KMS keys, server logs, lock file (default `.data`)',
  LEDGERLOCK_TOOLS_DIR: 'where `npm run setup` builds the pinned servers (default `.tools`)',
  LOG_LEVEL: '`debug`, `info` (default), `warn` or `error`',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'OTLP/HTTP (protobuf) collector base URL (for example `http://127.0.0.1:4318`); when set, every process exports traces to `<URL>/v1/traces`; unset, nothing is exported and no span processor runs (default unset)',
  API_HOST: 'address the API binds to (default `127.0.0.1`)',
  API_PORT: 'API port (default 3000; 0 picks a free one)',
  DATABASE_URL: 'PostgreSQL URL of the database owner, used only by `migrate` (and `npm start`\'s migrations) (default `postgres://127.0.0.1:5432/ledgerlock`; give it to the migrate job only in production)',
  DATABASE_APP_URL: 'PostgreSQL URL of the application\'s own LOGIN role, which the API, worker and codec server connect as: it may only read and append to the audit trail and owns nothing (local default: DATABASE_URL as user `ledgerlock_app`, which the migrations let log in; required in production)',
  TEMPORAL_ADDRESS: 'Temporal frontend `host:port` (local default `127.0.0.1:<TEMPORAL_PORT>`; required in production)',
  TEMPORAL_NAMESPACE: 'Temporal namespace (default `default`)',
  TEMPORAL_TASK_QUEUE: 'task queue of workflows and general activities (default `ledgerlock`)',
  WORKER_MAX_CACHED_WORKFLOWS: 'workflows a worker keeps in memory between tasks (default 1000); the rest replay from history when they wake, so memory stays bounded however many campaigns wait on timers',
  LEDGERLOCK_TEMPORAL: 'the Temporal `npm start` runs when TEMPORAL_ADDRESS is unset: `dev` (default), the CLI\'s dev server on SQLite; `server`, the full Temporal server on PostgreSQL (databases `temporal_<db>` and `temporal_visibility_<db>` beside DATABASE_URL\'s `<db>`), set up as docker-compose does',
  TEMPORAL_PORT: 'local Temporal (dev or full server) gRPC port (default 7233)',
  TEMPORAL_UI_HOST: 'address the local Web UI (the proxy serving the dev server\'s Web UI and the codec server on one origin) binds to (default `127.0.0.1`)',
  TEMPORAL_UI_PORT: 'local Web UI port, where operators open it (default 8233): the proxy serving the dev server\'s Web UI and the codec server on one origin (the full server has no UI)',
  TEMPORAL_UI_BACKEND_PORT: 'loopback port of the dev server\'s own Web UI, behind that proxy (default 8234)',
  TEMPORAL_HTTP_PORT: 'local Temporal HTTP API port (default 7243)',
  TEMPORAL_METRICS_PORT: 'local Temporal `/metrics` port (default 7244)',
  TEMPORAL_TLS_CERT: 'client certificate (PEM file) for mTLS to Temporal',
  TEMPORAL_TLS_KEY: 'client key (PEM file) for mTLS to Temporal',
  TEMPORAL_TLS_CA: 'CA bundle (PEM file) that signed the Temporal server certificate; set alone, the connection uses TLS without a client certificate',
  TEMPORAL_API_KEY: 'API key for Temporal Cloud (or a server that authorises API keys), sent as a bearer token; the connection then always uses TLS. Production needs it or the mTLS pair',
  TEMPORAL_CLI_PATH: 'use this `temporal` binary instead of building the pinned one',
  TEMPORAL_SERVER_PATH: 'use this `temporal-server` binary (LEDGERLOCK_TEMPORAL=server) instead of building the pinned one',
  TEMPORAL_SQL_TOOL_PATH: 'use this `temporal-sql-tool` binary (LEDGERLOCK_TEMPORAL=server) instead of building the pinned one',
  STRIPE_SECRET_KEY: 'Stripe secret key; when set without STRIPE_API_URL, real Stripe is used (required in production)',
  STRIPE_API_URL: 'Stripe API base URL (local default: the embedded stripe-mock)',
  STRIPE_WEBHOOK_SECRET: 'Stripe webhook endpoint secrets (`whsec_…`), comma-separated: add the new one before rolling the endpoint\'s secret, remove the old one after (required in production; locally one is generated into the data folder)',
  STRIPE_WEBHOOK_RETRY_MAX_SECONDS: 'longest wait between attempts to deliver a recorded webhook event to its workflow while Temporal is unreachable (default 60)',
  STRIPE_MOCK_PORT: 'local stripe-mock port (default 12111)',
  STRIPE_MOCK_PATH: 'use this `stripe-mock` binary instead of building the pinned one',
  KMS_ENDPOINT: 'KMS endpoint URL (local default: the local-kms `npm start` runs); unset in production for AWS KMS',
  KMS_PORT: 'local KMS port (default 4599)',
  LOCAL_KMS_PATH: 'run this local-kms binary instead of the one `npm run setup` builds',
  AWS_REGION: 'AWS region of the KMS client (local default `eu-west-1`)',
  KMS_KEY_ALIAS_PREFIX: 'master key aliases are `<prefix>-<region>` (default `alias/ledgerlock`)',
  LEDGERLOCK_REGIONS: 'data-residency regions, comma-separated (default `eu,us`)',
  AUTH_ISSUER: 'required `iss` of API tokens (local default `ledgerlock-local`; required in production)',
  AUTH_AUDIENCE: 'required `aud` of API tokens (default `ledgerlock-api`)',
  AUTH_JWKS_URL: 'JWKS URL of the token issuer (required in production; locally a key pair is generated into the data folder)',
  API_TLS_CERT: 'certificate chain (PEM file): the API serves HTTPS, TLS 1.3 minimum',
  API_TLS_KEY: 'private key (PEM file) of API_TLS_CERT',
  API_TLS_TERMINATED_BY: '`proxy` when a reverse proxy or load balancer in front of the API and codec server terminates TLS: production then accepts serving plain HTTP behind it without API_TLS_CERT/API_TLS_KEY',
  CODEC_HOST: 'address the codec server binds to (default `127.0.0.1`)',
  CODEC_PORT: 'codec server port for the Temporal Web UI (default 8888)',
  METRICS_HOST: 'address the Prometheus `/metrics` listener of every process binds to (default `127.0.0.1`); never the API listener',
  METRICS_PORT: 'port of that listener (default 9464; 0 picks a free one, printed in the `metrics listening` log line)',
  CODEC_CORS_ORIGINS: 'Web UI origins allowed to call the codec server, comma-separated (local default: the local Web UI\'s origin on `TEMPORAL_UI_PORT`, 127.0.0.1 and localhost)',
  DATA_KEY_CACHE_MAX_AGE_SECONDS: 'how long a plaintext data key may stay in memory (default 300)',
  DATA_KEY_CACHE_MAX_USES: 'how many encryptions or decryptions a cached data key may serve (default 10000)',
  DATA_KEY_CACHE_MAX_ENTRIES: 'how many plaintext data keys a process holds at once, least recently used evicted first (default 10000)',
  STRIPE_MAX_ACTIVITIES_PER_SECOND: 'cap on Stripe calls per second across all workers, enforced by Temporal (default 20, under the Stripe test-mode limit of 25)',
  SUBSCRIPTION_PAYMENT_WINDOW_SECONDS: 'how long a new subscription waits for its first payment (3-D Secure) before it is undone (default 82800 = 23 h, like Stripe)',
  STRIPE_SHARED_FIELDS: 'customer fields Stripe receives, comma-separated from email,name,phone,address (default `email,name`)',
  DUNNING_POLICY: 'JSON of the dunning policy fields to change from the default (`retryOffsetsSeconds` [3,7,14,21 days], `maxAttempts` 4, `gracePeriodSeconds` 7 days, `finalAction` `cancel`, `mark_unpaid` or `leave_past_due` (default cancel), `hardDeclineCodes`); a campaign keeps the policy it started with',
  DUNNING_POLICY_BY_PRICE: 'JSON object of Stripe price id to the policy fields that price changes from DUNNING_POLICY',
  KEY_ROTATION_INTERVAL_DAYS: 'days between scheduled master key rotations (default 90, the cryptoperiod; the `key-rotation` schedule is created or updated at start)',
  KEY_ROTATION_GRACE_SECONDS: 'how long an old master key stays decrypt-only after a rotation before it is retired (default 604800 = 7 days; at least DATA_KEY_CACHE_MAX_AGE_SECONDS; old codec keys are never retired automatically)',
  KEY_ROTATION_BATCH_SIZE: 'data keys re-wrapped and verified per batch, each batch heartbeating its cursor (default 200)',
  CUSTOMER_RETENTION_DAYS: 'days after a customer\'s last subscription ended (or, with none, after registration) before the daily `customer-retention` schedule erases them (default 730: past the longest card dispute window of 540 days)',
  AUDIT_CHECKPOINT_DIR: 'append-only folder the workers write signed audit checkpoints to, one file per checkpoint, each database in a subfolder of its name (default `<LEDGERLOCK_DATA_DIR>/audit-checkpoints`; required in production, on write-once storage)',
  AUDIT_CHECKPOINT_INTERVAL_SECONDS: 'longest time a new audit entry waits for a signed checkpoint (default 300)',
  AUDIT_CHECKPOINT_EVERY_ENTRIES: 'audit entries after which a checkpoint is written without waiting for the interval (default 1000)',
  RATE_LIMIT_READS_PER_SECOND: 'reads (GET) each token identity may make per second, shared by every API process (default 50)',
  RATE_LIMIT_READS_BURST: 'reads a token identity may make at once after being idle (default 100)',
  RATE_LIMIT_WRITES_PER_SECOND: 'writes (POST, PUT, PATCH, DELETE other than erasures) each token identity may make per second (default 10)',
  RATE_LIMIT_WRITES_BURST: 'writes a token identity may make at once after being idle (default 20)',
  RATE_LIMIT_ERASURES_PER_MINUTE: 'customer erasures (DELETE /v1/customers/:id) each token identity may ask for per minute (default 5)',
  RATE_LIMIT_ERASURES_BURST: 'erasures a token identity may ask for at once after being idle (default 5)',
  RATE_LIMIT_EXPORTS_PER_MINUTE: 'customer exports (GET /v1/customers/:id/export) each token identity may ask for per minute (default 5)',
  RATE_LIMIT_EXPORTS_BURST: 'exports a token identity may ask for at once after being idle (default 5)',
  RATE_LIMIT_SOURCE_PER_SECOND: 'requests per second each source address may make to the Stripe webhook (shared by every API process) and to /healthz and /readyz (per process) (default 200)',
  RATE_LIMIT_SOURCE_BURST: 'requests a source address may make at once to those routes after being idle (default 400)',
} as const;

export type EnvName = keyof typeof ENV_DOCS;

/** Variables read by the SDKs themselves (the AWS credential chain), never by Ledgerlock's code. */
export const SDK_ENV = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE'] as const;

const logLevel = z.enum(['debug', 'info', 'warn', 'error']);

const rawSchema = z.object({
  LEDGERLOCK_MODE: z.enum(['local', 'production']).default('local'),
  LEDGERLOCK_DATA_DIR: z.string().min(1).default('.data'),
  LEDGERLOCK_TOOLS_DIR: z.string().min(1).default('.tools'),
  LOG_LEVEL: logLevel.default('info'),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalUrl,
  API_HOST: z.string().min(1).default('127.0.0.1'),
  // 0 lets the OS pick, which tests and side-by-side checkouts use.
  API_PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  DATABASE_URL: postgresUrl.optional(),
  DATABASE_APP_URL: postgresUrl.optional(),
  TEMPORAL_ADDRESS: z
    .string()
    .regex(/^[^\s:/]+:\d{1,5}$/, 'must be host:port')
    .optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_TASK_QUEUE: z.string().min(1).default('ledgerlock'),
  WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).max(100_000).default(1000),
  LEDGERLOCK_TEMPORAL: z.enum(['dev', 'server']).default('dev'),
  TEMPORAL_PORT: port.default(7233),
  TEMPORAL_UI_HOST: z.string().min(1).default('127.0.0.1'),
  TEMPORAL_UI_PORT: port.default(8233),
  TEMPORAL_UI_BACKEND_PORT: port.default(8234),
  TEMPORAL_HTTP_PORT: port.default(7243),
  TEMPORAL_METRICS_PORT: port.default(7244),
  TEMPORAL_TLS_CERT: z.string().min(1).optional(),
  TEMPORAL_TLS_KEY: z.string().min(1).optional(),
  TEMPORAL_TLS_CA: z.string().min(1).optional(),
  TEMPORAL_API_KEY: z
    .string()
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces')
    .optional(),
  TEMPORAL_CLI_PATH: z.string().min(1).optional(),
  TEMPORAL_SERVER_PATH: z.string().min(1).optional(),
  TEMPORAL_SQL_TOOL_PATH: z.string().min(1).optional(),
  STRIPE_SECRET_KEY: z
    .string()
    .regex(/^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/, 'must be a Stripe secret or restricted key (sk_… or rk_…)')
    .optional(),
  STRIPE_API_URL: optionalUrl,
  STRIPE_WEBHOOK_SECRET: z
    .string()
    .regex(/^whsec_[A-Za-z0-9_+/=-]{16,}(,whsec_[A-Za-z0-9_+/=-]{16,})*$/, 'must be comma-separated Stripe webhook secrets (whsec_…)')
    .optional(),
  STRIPE_WEBHOOK_RETRY_MAX_SECONDS: z.coerce.number().positive().max(3600).default(60),
  STRIPE_MOCK_PORT: port.default(12111),
  STRIPE_MOCK_PATH: z.string().min(1).optional(),
  KMS_ENDPOINT: optionalUrl,
  KMS_PORT: port.default(4599),
  LOCAL_KMS_PATH: z.string().min(1).optional(),
  AWS_REGION: z
    .string()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1')
    .optional(),
  KMS_KEY_ALIAS_PREFIX: z
    .string()
    .regex(/^alias\/[A-Za-z0-9/_-]+$/, 'must start with alias/')
    .default('alias/ledgerlock'),
  LEDGERLOCK_REGIONS: z
    .string()
    .regex(/^[a-z]{2}(,[a-z]{2})*$/, 'must be comma-separated two-letter region codes, e.g. eu,us')
    .default('eu,us'),
  AUTH_ISSUER: z.string().min(1).optional(),
  AUTH_AUDIENCE: z.string().min(1).default('ledgerlock-api'),
  AUTH_JWKS_URL: z.url().optional(),
  API_TLS_CERT: z.string().min(1).optional(),
  API_TLS_KEY: z.string().min(1).optional(),
  API_TLS_TERMINATED_BY: z.enum(['proxy'], { message: 'must be proxy, or unset when the API serves TLS itself' }).optional(),
  CODEC_HOST: z.string().min(1).default('127.0.0.1'),
  CODEC_PORT: z.coerce.number().int().min(0).max(65535).default(8888),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  CODEC_CORS_ORIGINS: z
    .string()
    .regex(/^https?:\/\/[^,\s]+(,https?:\/\/[^,\s]+)*$/, 'must be comma-separated http(s) origins')
    .optional(),
  DATA_KEY_CACHE_MAX_AGE_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  DATA_KEY_CACHE_MAX_USES: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  DATA_KEY_CACHE_MAX_ENTRIES: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  STRIPE_MAX_ACTIVITIES_PER_SECOND: z.coerce.number().positive().max(10_000).default(20),
  SUBSCRIPTION_PAYMENT_WINDOW_SECONDS: z.coerce.number().int().min(1).max(30 * 86_400).default(82_800),
  STRIPE_SHARED_FIELDS: z
    .string()
    .regex(/^(email|name|phone|address)(,(email|name|phone|address))*$/, 'must be a comma-separated subset of email,name,phone,address')
    .default('email,name'),
  DUNNING_POLICY: z.string().min(2).optional(),
  DUNNING_POLICY_BY_PRICE: z.string().min(2).optional(),
  KEY_ROTATION_INTERVAL_DAYS: z.coerce.number().int().min(1).max(3650).default(90),
  KEY_ROTATION_GRACE_SECONDS: z.coerce.number().int().min(0).max(365 * 86_400).default(7 * 86_400),
  CUSTOMER_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(730),
  KEY_ROTATION_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(200),
  AUDIT_CHECKPOINT_DIR: z.string().min(1).optional(),
  AUDIT_CHECKPOINT_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
  AUDIT_CHECKPOINT_EVERY_ENTRIES: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  RATE_LIMIT_READS_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(50),
  RATE_LIMIT_READS_BURST: z.coerce.number().int().min(1).max(1_000_000).default(100),
  RATE_LIMIT_WRITES_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(10),
  RATE_LIMIT_WRITES_BURST: z.coerce.number().int().min(1).max(1_000_000).default(20),
  RATE_LIMIT_ERASURES_PER_MINUTE: z.coerce.number().positive().max(1_000_000).default(5),
  RATE_LIMIT_ERASURES_BURST: z.coerce.number().int().min(1).max(1_000_000).default(5),
  RATE_LIMIT_EXPORTS_PER_MINUTE: z.coerce.number().positive().max(1_000_000).default(5),
  RATE_LIMIT_EXPORTS_BURST: z.coerce.number().int().min(1).max(1_000_000).default(5),
  RATE_LIMIT_SOURCE_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(200),
  RATE_LIMIT_SOURCE_BURST: z.coerce.number().int().min(1).max(1_000_000).default(400),
});

type Raw = z.infer<typeof rawSchema>;

export type Mode = Raw['LEDGERLOCK_MODE'];
export type LogLevel = z.infer<typeof logLevel>;

/** TLS to Temporal: mutual when the client pair is set; server-authenticated only otherwise (with an API key or a CA alone). */
export interface TemporalTls {
  readonly clientCert?: { readonly certPath: string; readonly keyPath: string };
  readonly caPath?: string;
}

/** A token bucket: `burst` tokens at most, refilled at `perSecond`; each request takes one. */
export interface BucketLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/** Authenticated routes by class; `source` is the per-address limit of the webhook and health routes. */
export interface RateLimits {
  readonly read: BucketLimit;
  readonly write: BucketLimit;
  readonly erase: BucketLimit;
  readonly export: BucketLimit;
  readonly source: BucketLimit;
}

export interface Config {
  readonly mode: Mode;
  readonly dataDir: string;
  readonly toolsDir: string;
  readonly logLevel: LogLevel;
  /** Set when traces are exported: the OTLP/HTTP collector's base URL. */
  readonly tracing?: { readonly otlpEndpoint: string };
  readonly api: { readonly host: string; readonly port: number };
  /** The owner's URL, for migrations only; absent in a production process that does not migrate (see {@link ownerDatabaseUrl}). */
  readonly databaseUrl?: string;
  /** The application role's URL: what the API, worker and codec server connect with. */
  readonly databaseAppUrl: string;
  readonly temporal: {
    readonly address: string;
    readonly namespace: string;
    readonly taskQueue: string;
    /** The general worker's sticky cache of workflows. */
    readonly maxCachedWorkflows: number;
    readonly tls?: TemporalTls;
    /** Temporal Cloud's API key; a secret, sent over TLS only. */
    readonly apiKey?: string;
    /** Set when `npm start` runs the dev server itself. */
    readonly devServer?: {
      readonly port: number;
      /** Where operators open the Web UI: the proxy that serves it and the codec server on one origin. */
      readonly uiHost: string;
      readonly uiPort: number;
      /** The dev server's own Web UI, on loopback, behind the proxy. */
      readonly uiBackendPort: number;
      /** Its HTTP API and `/metrics` ports: given explicitly, never the random ones it would pick. */
      readonly httpPort: number;
      readonly metricsPort: number;
      readonly executable?: string;
    };
    /** Set when `npm start` runs the full Temporal server on PostgreSQL itself (LEDGERLOCK_TEMPORAL=server). */
    readonly fullServer?: {
      readonly port: number;
      readonly httpPort: number;
      readonly metricsPort: number;
      /** Overrides of the pinned server, schema tool and CLI. */
      readonly executables: { readonly server?: string; readonly sqlTool?: string; readonly cli?: string };
    };
  };
  readonly stripe: {
    readonly secretKey: string;
    /** Absent for real Stripe. */
    readonly apiUrl?: string;
    /** Set when `npm start` runs stripe-mock itself. */
    readonly mock?: { readonly port: number; readonly executable?: string };
    /** Global cap on the Stripe task queue's activities per second. */
    readonly maxActivitiesPerSecond: number;
    /** Accepted webhook endpoint secrets. Absent locally: one is generated into `dataDir` (see `webhookSecrets`). */
    readonly webhookSecrets?: readonly string[];
    /** The webhook relay's longest backoff between delivery attempts. */
    readonly webhookRetryMaxMs: number;
  };
  readonly kms: {
    readonly region: string;
    /** Absent for AWS KMS. */
    readonly endpoint?: string;
    /** Sign with throwaway credentials: a local KMS ignores signatures and has no credential chain. */
    readonly localCredentials: boolean;
    readonly aliasPrefix: string;
    /** Set when `npm start` runs local-kms itself; `executable` overrides the pinned build. */
    readonly local?: { readonly port: number; readonly executable?: string };
  };
  readonly regions: readonly string[];
  readonly auth: {
    readonly issuer: string;
    readonly audience: string;
    /** Production: the issuer's JWKS. Absent locally, where a key pair lives in `dataDir/auth/`. */
    readonly jwksUrl?: string;
  };
  readonly apiTls?: { readonly certPath: string; readonly keyPath: string };
  readonly codec: {
    readonly host: string;
    readonly port: number;
    readonly corsOrigins: readonly string[];
    /** The session cookie is `Secure`: always in production (behind a TLS proxy too), and wherever the server serves HTTPS. */
    readonly secureCookies: boolean;
  };
  /** The Prometheus listener every process serves `/metrics` on, apart from the API's. */
  readonly metrics: { readonly host: string; readonly port: number };
  readonly dataKeyCache: DataKeyCacheLimits;
  readonly subscriptions: { readonly paymentWindowSeconds: number };
  /** What Stripe receives of a customer's profile (data minimisation); never card data. */
  readonly stripeSharedFields: readonly ('email' | 'name' | 'phone' | 'address')[];
  /** Dunning policies: the default and per-price overrides. */
  readonly dunning: DunningPolicies;
  readonly keyRotation: { readonly intervalDays: number; readonly graceSeconds: number; readonly batchSize: number };
  /** Days a customer is kept after their business with us ended; then the `customer-retention` schedule erases them. */
  readonly customerRetentionDays: number;
  /** Signed checkpoints of the audit chain's head, written outside PostgreSQL. */
  readonly auditCheckpoints: { readonly dir: string; readonly intervalMs: number; readonly everyEntries: number };
  /** Token buckets: per token identity and route class, and per source address on the unauthenticated routes. */
  readonly rateLimits: RateLimits;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly { variable: string; message: string }[]) {
    super(
      `Invalid configuration:\n${problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
  }
}

/**
 * Reads and validates `env` once. The result is deeply frozen; pass it down rather than
 * reading `process.env` elsewhere.
 *
 * @throws ConfigError naming every invalid or missing variable (values are never echoed,
 * since some are secrets).
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const parsed = rawSchema.safeParse(pickKnown(env));
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => ({
        variable: String(issue.path[0] ?? '(environment)'),
        message: issue.message,
      })),
    );
  }
  const raw = parsed.data;
  const problems = raw.LEDGERLOCK_MODE === 'production' ? productionProblems(raw) : [];
  problems.push(...crossFieldProblems(raw));
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(build(raw, cwd));
}

function pickKnown(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of Object.keys(ENV_DOCS)) {
    const value = env[name];
    // An empty variable means "not set", as in most shells' `FOO= cmd`.
    if (value !== undefined && value !== '') out[name] = value;
  }
  return out;
}

function productionProblems(raw: Raw): { variable: string; message: string }[] {
  const required: EnvName[] = ['DATABASE_APP_URL', 'AUDIT_CHECKPOINT_DIR', 'TEMPORAL_ADDRESS', 'STRIPE_SECRET_KEY', 'STRIPE_WEBHOOK_SECRET', 'AWS_REGION', 'AUTH_ISSUER', 'AUTH_JWKS_URL', 'CODEC_CORS_ORIGINS'];
  const problems = required
    .filter((name) => raw[name] === undefined)
    .map((variable) => ({ variable, message: 'required when LEDGERLOCK_MODE=production' }));
  // Keys fetched over plain HTTP can be swapped in transit, and with them every token accepted.
  if (raw.AUTH_JWKS_URL !== undefined && new URL(raw.AUTH_JWKS_URL).protocol !== 'https:') {
    problems.push({ variable: 'AUTH_JWKS_URL', message: 'must be an https:// URL when LEDGERLOCK_MODE=production' });
  }
  // Bearer tokens and decrypted payloads cross this hop; only a TLS-terminating proxy in front replaces it.
  if (raw.API_TLS_CERT === undefined && raw.API_TLS_KEY === undefined && raw.API_TLS_TERMINATED_BY !== 'proxy') {
    for (const variable of ['API_TLS_CERT', 'API_TLS_KEY'] as const) {
      problems.push({ variable, message: 'required when LEDGERLOCK_MODE=production, unless API_TLS_TERMINATED_BY=proxy says a proxy terminates TLS' });
    }
  }
  // Half an mTLS pair is named by crossFieldProblems.
  if (raw.TEMPORAL_API_KEY === undefined && raw.TEMPORAL_TLS_CERT === undefined && raw.TEMPORAL_TLS_KEY === undefined) {
    for (const variable of ['TEMPORAL_TLS_CERT', 'TEMPORAL_API_KEY'] as const) {
      problems.push({ variable, message: 'LEDGERLOCK_MODE=production connects to Temporal over TLS: set TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (mutual TLS) or TEMPORAL_API_KEY' });
    }
  }
  return problems;
}

function crossFieldProblems(raw: Raw): { variable: string; message: string }[] {
  const problems: { variable: string; message: string }[] = [];
  if ((raw.TEMPORAL_TLS_CERT === undefined) !== (raw.TEMPORAL_TLS_KEY === undefined)) {
    const missing = raw.TEMPORAL_TLS_CERT === undefined ? 'TEMPORAL_TLS_CERT' : 'TEMPORAL_TLS_KEY';
    problems.push({ variable: missing, message: 'mTLS needs both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY' });
  }
  if ((raw.API_TLS_CERT === undefined) !== (raw.API_TLS_KEY === undefined)) {
    const missing = raw.API_TLS_CERT === undefined ? 'API_TLS_CERT' : 'API_TLS_KEY';
    problems.push({ variable: missing, message: 'HTTPS needs both API_TLS_CERT and API_TLS_KEY' });
  }
  for (const [variable, schema] of [
    ['DUNNING_POLICY', policyOverrideSchema],
    ['DUNNING_POLICY_BY_PRICE', z.record(z.string().regex(stripeIdPattern('price'), 'keys must be Stripe price ids (price_…)'), policyOverrideSchema)],
  ] as const) {
    const text = raw[variable];
    if (text === undefined) continue;
    const parsed = parseJsonVariable(text, schema as z.ZodType<unknown>);
    if (!parsed.ok) problems.push({ variable, message: parsed.message });
  }
  if (raw.KEY_ROTATION_GRACE_SECONDS < raw.DATA_KEY_CACHE_MAX_AGE_SECONDS) {
    // The codec keeps encoding with a cached data key wrapped by the old master key that long.
    problems.push({ variable: 'KEY_ROTATION_GRACE_SECONDS', message: 'must be at least DATA_KEY_CACHE_MAX_AGE_SECONDS' });
  }
  if (raw.STRIPE_SECRET_KEY?.includes('_live_') && raw.LEDGERLOCK_MODE !== 'production') {
    problems.push({ variable: 'STRIPE_SECRET_KEY', message: 'a live key is only accepted with LEDGERLOCK_MODE=production' });
  }
  return problems;
}

function build(raw: Raw, cwd: string): Config {
  const local = raw.LEDGERLOCK_MODE === 'local';
  const runTemporal = local && raw.TEMPORAL_ADDRESS === undefined;
  const runStripeMock = local && raw.STRIPE_SECRET_KEY === undefined && raw.STRIPE_API_URL === undefined;
  const runLocalKms = local && raw.KMS_ENDPOINT === undefined && raw.AWS_REGION === undefined;
  const clientCert = raw.TEMPORAL_TLS_CERT && raw.TEMPORAL_TLS_KEY ? { certPath: raw.TEMPORAL_TLS_CERT, keyPath: raw.TEMPORAL_TLS_KEY } : undefined;
  // An API key is a bearer secret: it never travels without TLS.
  const tls: TemporalTls | undefined =
    clientCert || raw.TEMPORAL_API_KEY || raw.TEMPORAL_TLS_CA ? { ...opt('clientCert', clientCert), ...opt('caPath', raw.TEMPORAL_TLS_CA) } : undefined;
  return {
    mode: raw.LEDGERLOCK_MODE,
    dataDir: path.resolve(cwd, raw.LEDGERLOCK_DATA_DIR),
    toolsDir: path.resolve(cwd, raw.LEDGERLOCK_TOOLS_DIR),
    logLevel: raw.LOG_LEVEL,
    ...(raw.OTEL_EXPORTER_OTLP_ENDPOINT ? { tracing: { otlpEndpoint: raw.OTEL_EXPORTER_OTLP_ENDPOINT } } : {}),
    api: { host: raw.API_HOST, port: raw.API_PORT },
    metrics: { host: raw.METRICS_HOST, port: raw.METRICS_PORT },
    // Local only: the machine's own PostgreSQL with trust auth.
    ...opt('databaseUrl', raw.DATABASE_URL ?? (local ? LOCAL_DATABASE_URL : undefined)),
    // Production requires it (productionProblems), so the fallback is local only.
    databaseAppUrl: raw.DATABASE_APP_URL ?? localAppDatabaseUrl(raw.DATABASE_URL ?? LOCAL_DATABASE_URL),
    temporal: {
      address: raw.TEMPORAL_ADDRESS ?? `127.0.0.1:${raw.TEMPORAL_PORT}`,
      namespace: raw.TEMPORAL_NAMESPACE,
      taskQueue: raw.TEMPORAL_TASK_QUEUE,
      maxCachedWorkflows: raw.WORKER_MAX_CACHED_WORKFLOWS,
      ...(tls ? { tls } : {}),
      ...opt('apiKey', raw.TEMPORAL_API_KEY),
      ...(runTemporal && raw.LEDGERLOCK_TEMPORAL === 'server'
        ? {
            fullServer: {
              port: raw.TEMPORAL_PORT,
              httpPort: raw.TEMPORAL_HTTP_PORT,
              metricsPort: raw.TEMPORAL_METRICS_PORT,
              executables: { ...opt('server', raw.TEMPORAL_SERVER_PATH), ...opt('sqlTool', raw.TEMPORAL_SQL_TOOL_PATH), ...opt('cli', raw.TEMPORAL_CLI_PATH) },
            },
          }
        : {}),
      ...(runTemporal && raw.LEDGERLOCK_TEMPORAL === 'dev'
        ? {
            devServer: {
              port: raw.TEMPORAL_PORT,
              uiHost: raw.TEMPORAL_UI_HOST,
              uiPort: raw.TEMPORAL_UI_PORT,
              uiBackendPort: raw.TEMPORAL_UI_BACKEND_PORT,
              httpPort: raw.TEMPORAL_HTTP_PORT,
              metricsPort: raw.TEMPORAL_METRICS_PORT,
              ...opt('executable', raw.TEMPORAL_CLI_PATH),
            },
          }
        : {}),
    },
    stripe: {
      // Local only: stripe-mock accepts any key shaped like a test key.
      secretKey: raw.STRIPE_SECRET_KEY ?? LOCAL_ONLY_STRIPE_KEY,
      ...opt('apiUrl', raw.STRIPE_API_URL ?? (runStripeMock ? `http://127.0.0.1:${raw.STRIPE_MOCK_PORT}` : undefined)),
      ...(runStripeMock ? { mock: { port: raw.STRIPE_MOCK_PORT, ...opt('executable', raw.STRIPE_MOCK_PATH) } } : {}),
      maxActivitiesPerSecond: raw.STRIPE_MAX_ACTIVITIES_PER_SECOND,
      ...opt('webhookSecrets', raw.STRIPE_WEBHOOK_SECRET?.split(',')),
      webhookRetryMaxMs: raw.STRIPE_WEBHOOK_RETRY_MAX_SECONDS * 1000,
    },
    kms: {
      // Local only: the local KMS only echoes the region in ARNs.
      region: raw.AWS_REGION ?? 'eu-west-1',
      ...opt('endpoint', raw.KMS_ENDPOINT ?? (runLocalKms ? `http://127.0.0.1:${raw.KMS_PORT}` : undefined)),
      aliasPrefix: raw.KMS_KEY_ALIAS_PREFIX,
      localCredentials: local && (raw.KMS_ENDPOINT !== undefined || runLocalKms),
      ...(runLocalKms ? { local: { port: raw.KMS_PORT, ...opt('executable', raw.LOCAL_KMS_PATH) } } : {}),
    },
    regions: raw.LEDGERLOCK_REGIONS.split(','),
    auth: {
      // Local only: tokens minted by `ledgerlock token` with the data folder's key pair.
      issuer: raw.AUTH_ISSUER ?? 'ledgerlock-local',
      audience: raw.AUTH_AUDIENCE,
      ...opt('jwksUrl', raw.AUTH_JWKS_URL),
    },
    ...(raw.API_TLS_CERT && raw.API_TLS_KEY ? { apiTls: { certPath: raw.API_TLS_CERT, keyPath: raw.API_TLS_KEY } } : {}),
    codec: {
      host: raw.CODEC_HOST,
      port: raw.CODEC_PORT,
      // The local Web UI's origin: the proxy serving the UI and the codec server together, over HTTPS with the API's certificate.
      corsOrigins: raw.CODEC_CORS_ORIGINS?.split(',') ?? [
        `${raw.API_TLS_CERT && raw.API_TLS_KEY ? 'https' : 'http'}://127.0.0.1:${raw.TEMPORAL_UI_PORT}`,
        `${raw.API_TLS_CERT && raw.API_TLS_KEY ? 'https' : 'http'}://localhost:${raw.TEMPORAL_UI_PORT}`,
      ],
      secureCookies: !local || (raw.API_TLS_CERT !== undefined && raw.API_TLS_KEY !== undefined),
    },
    dataKeyCache: { maxAgeMs: raw.DATA_KEY_CACHE_MAX_AGE_SECONDS * 1000, maxUses: raw.DATA_KEY_CACHE_MAX_USES, maxEntries: raw.DATA_KEY_CACHE_MAX_ENTRIES },
    subscriptions: { paymentWindowSeconds: raw.SUBSCRIPTION_PAYMENT_WINDOW_SECONDS },
    stripeSharedFields: raw.STRIPE_SHARED_FIELDS.split(',') as Config['stripeSharedFields'][number][],
    keyRotation: { intervalDays: raw.KEY_ROTATION_INTERVAL_DAYS, graceSeconds: raw.KEY_ROTATION_GRACE_SECONDS, batchSize: raw.KEY_ROTATION_BATCH_SIZE },
    customerRetentionDays: raw.CUSTOMER_RETENTION_DAYS,
    auditCheckpoints: {
      dir: path.resolve(cwd, raw.AUDIT_CHECKPOINT_DIR ?? path.join(raw.LEDGERLOCK_DATA_DIR, 'audit-checkpoints')),
      intervalMs: raw.AUDIT_CHECKPOINT_INTERVAL_SECONDS * 1000,
      everyEntries: raw.AUDIT_CHECKPOINT_EVERY_ENTRIES,
    },
    rateLimits: {
      read: { perSecond: raw.RATE_LIMIT_READS_PER_SECOND, burst: raw.RATE_LIMIT_READS_BURST },
      write: { perSecond: raw.RATE_LIMIT_WRITES_PER_SECOND, burst: raw.RATE_LIMIT_WRITES_BURST },
      erase: { perSecond: raw.RATE_LIMIT_ERASURES_PER_MINUTE / 60, burst: raw.RATE_LIMIT_ERASURES_BURST },
      export: { perSecond: raw.RATE_LIMIT_EXPORTS_PER_MINUTE / 60, burst: raw.RATE_LIMIT_EXPORTS_BURST },
      source: { perSecond: raw.RATE_LIMIT_SOURCE_PER_SECOND, burst: raw.RATE_LIMIT_SOURCE_BURST },
    },
    // Validated in crossFieldProblems before build runs.
    dunning: buildDunningPolicies(
      raw.DUNNING_POLICY ? (JSON.parse(raw.DUNNING_POLICY) as PolicyOverride) : undefined,
      raw.DUNNING_POLICY_BY_PRICE ? (JSON.parse(raw.DUNNING_POLICY_BY_PRICE) as Record<string, PolicyOverride>) : undefined,
    ),
  };
}

function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

const LOCAL_DATABASE_URL = 'postgres://127.0.0.1:5432/ledgerlock';

/** The application's LOGIN role, which the migrations grant to: its name is fixed, like the tables'. */
export const APP_DATABASE_ROLE = 'ledgerlock_app';

/**
 * Local only: the owner's URL as the application role, with no password (trust or peer
 * authentication on a developer's machine; production names DATABASE_APP_URL).
 */
function localAppDatabaseUrl(ownerUrl: string): string {
  const url = new URL(ownerUrl);
  url.username = APP_DATABASE_ROLE;
  url.password = '';
  return url.toString();
}

/**
 * The owner's URL, which only migrations use.
 *
 * @throws ConfigError naming DATABASE_URL when this process was not given it.
 */
export function ownerDatabaseUrl(config: Pick<Config, 'databaseUrl'>): string {
  if (config.databaseUrl === undefined) throw new ConfigError([{ variable: 'DATABASE_URL', message: 'required to migrate: the database owner\'s URL' }]);
  return config.databaseUrl;
}

/** The alias of the HMAC key that signs audit checkpoints. */
export function auditCheckpointKeyAlias(config: Pick<Config, 'kms'>): string {
  return `${config.kms.aliasPrefix}-audit-checkpoints`;
}

/** The alias of the master key Temporal payload keys are generated under. */
export function codecKeyAlias(config: Pick<Config, 'kms'>): string {
  return `${config.kms.aliasPrefix}-temporal-payloads`;
}

/**
 * The alias of the HMAC key (KMS `HMAC_256`, `GENERATE_VERIFY_MAC`) that turns a personal
 * token subject (an operator's email) into the pseudonymous actor the audit trail stores.
 * Never rotated: a new key would give every operator a new pseudonym.
 */
export function auditActorKeyAlias(config: Pick<Config, 'kms'>): string {
  return `${config.kms.aliasPrefix}-audit-actors`;
}

/** The alias of a region's master key, e.g. `alias/ledgerlock-eu`. */
export function masterKeyAlias(config: Pick<Config, 'kms'>, region: string): string {
  return `${config.kms.aliasPrefix}-${region}`;
}
