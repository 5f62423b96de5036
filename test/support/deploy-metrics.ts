import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../src/stack/paths';

export const ALERTS_PATH = path.join(REPO_ROOT, 'deploy/prometheus/alerts.yml');
export const DASHBOARD_PATH = path.join(REPO_ROOT, 'deploy/grafana/ledgerlock.json');

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export function alertGroups(): { name: string; rules: AlertRule[] }[] {
  return (parse(readFileSync(ALERTS_PATH, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] }).groups;
}

export function dashboardExprs(): string[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
  return dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
}

/** PromQL's own words, and the label names and functions our expressions use: not metric names. */
const PROMQL_WORDS = new Set(['sum', 'max', 'min', 'avg', 'by', 'without', 'and', 'or', 'unless', 'rate', 'increase', 'delta', 'histogram_quantile', 'offset', 'le', 'bool']);

/**
 * The metric names an expression reads: identifiers outside label matchers and strings,
 * that are not PromQL words or the label names of a `by (...)` clause.
 */
export function metricNamesIn(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][+-]?\d+)?/g, '0')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without)\s*\(([^)]*)\)/g, '');
  const names = new Set<string>();
  for (const [word] of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    if (!PROMQL_WORDS.has(word)) names.add(word);
  }
  return [...names];
}

/** Every metric name the alerts and the dashboard read. */
export function referencedMetricNames(): string[] {
  const exprs = [...alertGroups().flatMap((g) => g.rules.map((r) => r.expr)), ...dashboardExprs()];
  return [...new Set(exprs.flatMap(metricNamesIn))].sort();
}
