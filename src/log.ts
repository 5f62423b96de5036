import os from 'node:os';
import { isSpanContextValid, trace } from '@opentelemetry/api';
import type { Logger as TemporalLogger, LogLevel as TemporalLogLevel, LogMetadata } from '@temporalio/common';
import pino, { type DestinationStream, type LoggerOptions } from 'pino';
import type { LogLevel } from './config/config';

/**
 * The logger every Ledgerlock process writes through: pino, one JSON line per event on
 * stdout. Fields first, message second (pino's order): `log.info({ eventId }, 'stripe event received')`.
 * Callers pass opaque ids and counts; the redaction paths below are the net under that rule,
 * for whatever object reaches a log line by mistake. Text inside `msg` is never redacted.
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(fields: LogFields): Logger;
}

export interface LogFn {
  (fields: LogFields, msg: string): void;
  (msg: string): void;
}

export type LogFields = Record<string, unknown>;

/**
 * Keys whose values are secrets or personal data wherever they sit: as a field, or one or
 * two objects deep (a request's headers, an SDK error's request, a customer profile).
 * Case matters to pino, so the spellings Stripe, the AWS SDK and HTTP use are all listed.
 */
export const REDACTED_KEYS = [
  // credentials
  'authorization',
  'Authorization',
  'cookie',
  'Cookie',
  'set-cookie',
  'stripe-signature',
  'x-api-key',
  'token',
  'accessToken',
  'access_token',
  'refreshToken',
  'refresh_token',
  'idToken',
  'id_token',
  'apiKey',
  'api_key',
  'secret',
  'secretKey',
  'secret_key',
  'clientSecret',
  'client_secret',
  'webhookSecret',
  'password',
  'passphrase',
  'privateKey',
  'private_key',
  // key material (AWS KMS GenerateDataKey/Decrypt outputs, our data-key cache)
  'Plaintext',
  'plaintext',
  'dataKey',
  'SecretAccessKey',
  'secretAccessKey',
  'sessionToken',
  // personal data
  'email',
  'name',
  'phone',
  'address',
  'taxId',
  'tax_id',
  'profile',
  'metadata',
  'shipping',
  'billing_details',
  // card and payment fields (never ours to hold; Stripe's objects carry them)
  'card',
  'cvc',
  'number',
  'iban',
  'bank_account',
  'payment_method_data',
] as const;

/** pino's paths for {@link REDACTED_KEYS}: top level, and one and two levels down. */
export const REDACT_PATHS: readonly string[] = REDACTED_KEYS.flatMap((key) => {
  const at = /^[A-Za-z_$][\w$]*$/.test(key) ? `.${key}` : `["${key}"]`;
  return [at.startsWith('.') ? key : at, `*${at}`, `*.*${at}`];
});

export const REDACTED = '[Redacted]';

export interface LoggerDestination {
  write(line: string): void;
}

/**
 * The process logger. `destination` is stdout, written synchronously so that a line logged
 * right before `process.exit` is not lost; tests pass a function that collects lines.
 */
export function createLogger(level: LogLevel, base: LogFields = {}, destination?: LoggerDestination | ((line: string) => void)): Logger {
  const stream: DestinationStream =
    destination === undefined
      ? pino.destination({ dest: 1, sync: true })
      : typeof destination === 'function'
        ? { write: (line: string) => destination(line.endsWith('\n') ? line.slice(0, -1) : line) }
        : destination;
  return pino(loggerOptions(level, base), stream);
}

function loggerOptions(level: LogLevel, base: LogFields): LoggerOptions {
  return {
    level,
    base: { pid: process.pid, hostname: os.hostname(), ...base },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Level names, not numbers: what an on-call greps for.
    formatters: { level: (label) => ({ level: label }) },
    // The trace of the work a line belongs to, named as the Temporal interceptors name it in the SDK's lines.
    mixin: traceFields,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    // An error's name, message and stack only: its own properties (an SDK's request, a failure's details) stay out.
    serializers: { err: errorFields, error: errorFields, reason: errorFields },
  };
}

function traceFields(): LogFields {
  const context = trace.getActiveSpan()?.spanContext();
  return context && isSpanContextValid(context) ? { trace_id: context.traceId, span_id: context.spanId } : {};
}

function errorFields(value: unknown): unknown {
  return value instanceof Error ? { type: value.name, message: value.message, stack: value.stack } : value;
}

const TEMPORAL_LEVELS = { DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

/**
 * Keys of the SDK's metadata that hold Temporal payloads or their parts (activation jobs,
 * activity inputs and results, heartbeat details), decoded, hence plaintext, or the worker's
 * options (its data converter holds the payload codec and its key cache): censored whatever
 * the level.
 */
const TEMPORAL_UNSAFE_KEYS = new Set(['jobs', 'arguments', 'input', 'result', 'payloads', 'details', 'heartbeatDetails', 'start', 'completion', 'memo', 'headers', 'options']);

/**
 * The Temporal SDK's logger interface over ours, for `Runtime.install({ logger })`: the
 * worker's, the activities' (`log` of `@temporalio/activity`), the workflows' (the SDK's
 * logger sink behind `log` of `@temporalio/workflow`) and, forwarded, Core's own lines all
 * become pino lines with the same redaction. The SDK's metadata (workflowId, runId,
 * activityType, sdkComponent…) become fields. TRACE lines are never written: the SDK logs
 * whole activations and activity tasks there, payloads included.
 */
export function temporalLogger(log: Logger): TemporalLogger {
  const write = (level: TemporalLogLevel, message: string, meta?: LogMetadata) => {
    if (level === 'TRACE') return;
    log[TEMPORAL_LEVELS[level]](meta ? sdkFields(meta) : {}, message);
  };
  return {
    log: write,
    trace: () => undefined,
    debug: (message, meta) => write('DEBUG', message, meta),
    info: (message, meta) => write('INFO', message, meta),
    warn: (message, meta) => write('WARN', message, meta),
    error: (message, meta) => write('ERROR', message, meta),
  };
}

/** The SDK's metadata without its symbol keys (Core's timestamp), which JSON has no place for, and without payloads. */
function sdkFields(meta: LogMetadata): LogFields {
  const fields: LogFields = {};
  for (const key of Object.keys(meta)) fields[key] = TEMPORAL_UNSAFE_KEYS.has(key) ? REDACTED : meta[key];
  return fields;
}

/** The message of an unknown thrown value, for a log line. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
