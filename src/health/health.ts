import { DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import type { Client } from '@temporalio/client';
import { sql } from 'kysely';
import type Stripe from 'stripe';
import { masterKeyAlias, type Config } from '../config/config';
import type { Db } from '../db/database';
import { errorMessage, type Logger } from '../log';

export const DEPENDENCIES = ['temporal', 'postgres', 'kms', 'stripe'] as const;
export type Dependency = (typeof DEPENDENCIES)[number];

export interface DependencyHealth {
  readonly status: 'up' | 'down';
  readonly latencyMs: number;
}

export interface HealthReport {
  readonly status: 'ok' | 'unavailable';
  readonly dependencies: Record<Dependency, DependencyHealth>;
}

export type HealthCheck = () => Promise<unknown>;

export interface HealthDeps {
  readonly config: Pick<Config, 'temporal' | 'kms' | 'regions'>;
  readonly temporal: Pick<Client, 'workflowService'>;
  readonly db: Db;
  readonly kms: Pick<KMSClient, 'send'>;
  readonly stripe: Pick<Stripe, 'balance'>;
}

/** What each dependency must answer for Ledgerlock to do its job. */
export function healthChecks(deps: HealthDeps): Record<Dependency, HealthCheck> {
  const firstAlias = masterKeyAlias(deps.config, deps.config.regions[0]!);
  return {
    temporal: () => deps.temporal.workflowService.describeNamespace({ namespace: deps.config.temporal.namespace }),
    postgres: () => sql`select 1`.execute(deps.db),
    kms: () => deps.kms.send(new DescribeKeyCommand({ KeyId: firstAlias })),
    stripe: () => deps.stripe.balance.retrieve(),
  };
}

/**
 * Runs every check concurrently, each bounded by `timeoutMs`. Why a check failed is
 * logged, not returned: /healthz is unauthenticated and SDK messages can carry hosts,
 * key ids or account details.
 */
export async function checkHealth(
  checks: Record<Dependency, HealthCheck>,
  log: Logger,
  timeoutMs = 2_000,
): Promise<HealthReport> {
  const entries = await Promise.all(
    DEPENDENCIES.map(async (name): Promise<[Dependency, DependencyHealth]> => {
      const started = performance.now();
      try {
        await withTimeout(checks[name](), timeoutMs);
        return [name, { status: 'up', latencyMs: Math.round(performance.now() - started) }];
      } catch (err) {
        log.warn({ dependency: name, reason: errorMessage(err) }, 'health check failed');
        return [name, { status: 'down', latencyMs: Math.round(performance.now() - started) }];
      }
    }),
  );
  const dependencies = Object.fromEntries(entries) as Record<Dependency, DependencyHealth>;
  const allUp = entries.every(([, health]) => health.status === 'up');
  return { status: allUp ? 'ok' : 'unavailable', dependencies };
}

/**
 * Readiness as `/readyz` serves it: `checkHealth` at most once per `ttlMs`, its report shared
 * by every caller in that window, and concurrent callers of a stale report share one run.
 * `/readyz` is as public as the webhook listener it shares, so a flood of anonymous
 * requests costs Stripe, KMS, Temporal and PostgreSQL one round of checks per window.
 */
export function cachedReadiness(
  checks: Record<Dependency, HealthCheck>,
  log: Logger,
  options: { ttlMs: number; now?: () => number },
): () => Promise<HealthReport> {
  const now = options.now ?? (() => performance.now());
  let last: { at: number; report: Promise<HealthReport> } | undefined;
  return () => {
    if (!last || now() - last.at >= options.ttlMs) {
      const report = checkHealth(checks, log);
      last = { at: now(), report };
      // The window starts when the report is known, so a slow round is not re-run at once.
      void report.then(() => {
        if (last?.report === report) last = { at: now(), report };
      });
    }
    return last.report;
  };
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
