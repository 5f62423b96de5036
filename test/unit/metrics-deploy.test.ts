import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../src/stack/paths';
import { describe, expect, it } from 'vitest';
import { registry } from '../../src/metrics/metrics';
import { serverPath } from '../../src/stack/servers';
import { ALERTS_PATH, alertGroups, dashboardExprs, metricNamesIn, referencedMetricNames } from '../support/deploy-metrics';
import { testStack } from '../support/stack';

/** Series Prometheus makes itself for every target. */
const PROMETHEUS_SERIES = new Set(['up']);

/** A histogram's series are `<name>_bucket`, `_count` and `_sum`; a counter's, its name. */
function registered(name: string): boolean {
  if (registry.getSingleMetric(name)) return true;
  const base = name.replace(/_(bucket|count|sum)$/, '');
  const metric = registry.getSingleMetric(base) as { constructor: { name: string } } | undefined;
  return base !== name && metric?.constructor.name === 'Histogram';
}

describe('deploy/prometheus/alerts.yml and deploy/grafana/ledgerlock.json', () => {
  it('is a Prometheus rule file: named groups of uniquely named alerts, each with an expression, a severity and a summary', () => {
    const groups = alertGroups();
    expect(groups.length).toBeGreaterThan(0);
    const names = groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(new Set(names).size).toBe(names.length);
    for (const group of groups) {
      expect(group.name).toMatch(/^[a-z-]+$/);
      for (const rule of group.rules) {
        expect(rule.alert).toMatch(/^Ledgerlock[A-Za-z]+$/);
        expect(typeof rule.expr).toBe('string');
        expect(['page', 'ticket']).toContain(rule.labels?.severity);
        expect(rule.annotations?.summary, rule.alert).toBeTruthy();
        if (rule.for !== undefined) expect(rule.for).toMatch(/^\d+[smh]$/);
        // Balanced brackets: the cheapest syntax check that catches a cut expression.
        for (const [open, close] of [['(', ')'], ['{', '}'], ['[', ']']] as const) {
          expect(rule.expr.split(open).length, `${rule.alert} ${open}${close}`).toBe(rule.expr.split(close).length);
        }
      }
    }
  });

  it('passes `promtool check rules` (the pinned promtool, built by npm run setup)', () => {
    const promtool = serverPath('promtool', testStack().toolsDir);
    const check = spawnSync(promtool, ['check', 'rules', ALERTS_PATH], { encoding: 'utf8' });
    expect(check.error).toBeUndefined();
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(check.stdout).toMatch(new RegExp(`SUCCESS: ${alertGroups().flatMap((g) => g.rules).length} rules found`));
  });

  it('pages for what the issue names: saga compensation, Stripe, KMS, relay lag, authentication failures, audit tampering', () => {
    const paged = alertGroups().flatMap((g) => g.rules.filter((r) => r.labels?.severity === 'page'));
    const read = paged.flatMap((r) => metricNamesIn(r.expr));
    for (const metric of [
      'ledgerlock_saga_failed_total',
      'ledgerlock_saga_compensated_total',
      'ledgerlock_stripe_calls_total',
      'ledgerlock_kms_calls_total',
      'ledgerlock_webhook_relay_lag_seconds',
      'ledgerlock_token_refusals_total',
      'ledgerlock_audit_verify_failures_total',
      'ledgerlock_webhooks_total',
    ]) {
      expect(read).toContain(metric);
    }
  });

  it('reads only metrics that exist: ledgerlock_ and process_ ones in the registry (temporal_ ones are checked against a live scrape)', () => {
    const names = referencedMetricNames();
    expect(names.length).toBeGreaterThan(20);
    const ours = names.filter((n) => !n.startsWith('temporal_') && !PROMETHEUS_SERIES.has(n));
    for (const name of ours) expect(registered(name), name).toBe(true);
    expect(names.some((n) => n.startsWith('temporal_'))).toBe(true);
  });

  it('charts every ledgerlock_ metric on the dashboard', () => {
    const charted = new Set(dashboardExprs().flatMap(metricNamesIn).map((n) => n.replace(/_(bucket|count|sum)$/, '')));
    const ours = registry.getMetricsAsArray().map((m) => m.name).filter((n) => n.startsWith('ledgerlock_'));
    expect(ours.length).toBeGreaterThan(20);
    for (const name of ours) expect(charted.has(name), name).toBe(true);
  });

  it('finds metric names in PromQL, leaving out label names, strings and functions', () => {
    expect(metricNamesIn('sum by (saga, reason) (increase(ledgerlock_saga_failed_total{reason="CompensationFailed"}[15m])) > 0')).toEqual(['ledgerlock_saga_failed_total']);
    expect(metricNamesIn('histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m]))) / y')).toEqual(['x_bucket', 'y']);
  });

  it("has docker-compose's prometheus scrape every Ledgerlock service on its METRICS_PORT, under job names the alerts select", () => {
    const compose = parse(readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, { command?: string[]; environment?: Record<string, string> }> };
    const scrape = parse(readFileSync(path.join(REPO_ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    expect(scrape.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    const ledgerlock = Object.entries(compose.services).filter(([, s]) => ['api', 'worker', 'codec-server'].includes(s.command?.[0] ?? ''));
    expect(ledgerlock.length).toBe(3);
    const targets = scrape.scrape_configs.flatMap((c) => {
      expect(c.job_name).toMatch(/^ledgerlock-/);
      return c.static_configs.flatMap((sc) => sc.targets);
    });
    for (const [name, service] of ledgerlock) {
      expect(service.environment?.METRICS_HOST).toBe('0.0.0.0');
      expect(targets).toContain(`${name}:${service.environment?.METRICS_PORT}`);
    }
  });
});
