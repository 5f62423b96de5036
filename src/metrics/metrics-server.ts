import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log';
import { ledgerlockMetricsText, registry } from './metrics';

export interface MetricsServer {
  readonly url: string;
  stop(): Promise<void>;
}

export interface MetricsServerOptions {
  readonly host: string;
  readonly port: number;
  /** The Temporal SDK runtime's Prometheus exporter (see installTemporalRuntime), merged into `/metrics`. */
  readonly temporalMetricsUrl?: string;
  /** Refreshes PostgreSQL-backed gauges before each scrape (bounded by its own timeout). */
  readonly beforeScrape?: () => Promise<void>;
  readonly log: Pick<Logger, 'info' | 'warn'>;
}

const TEMPORAL_FETCH_TIMEOUT_MS = 2_000;

/**
 * Serves Prometheus text at `GET /metrics` on a listener of its own (METRICS_HOST,
 * METRICS_PORT: loopback by default), never on the public API listener. The body is
 * Ledgerlock's registry (`ledgerlock_` metrics and the process's own), then the Temporal
 * SDK's `temporal_` metrics when this process runs workers. A Temporal exporter that does
 * not answer leaves its part out; Ledgerlock's metrics are served regardless.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at /metrics\n');
      return;
    }
    void render(options).then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      () => res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}/metrics`;
  options.log.info({ host: options.host, port, temporal: options.temporalMetricsUrl !== undefined }, 'metrics listening');
  return {
    url,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function render(options: MetricsServerOptions): Promise<string> {
  await options.beforeScrape?.().catch(() => undefined);
  const [ours, temporal] = await Promise.all([ledgerlockMetricsText(), temporalText(options.temporalMetricsUrl)]);
  return temporal ? `${ours.trimEnd()}\n${temporal}` : ours;
}

async function temporalText(url: string | undefined): Promise<string | undefined> {
  if (!url) return undefined;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TEMPORAL_FETCH_TIMEOUT_MS) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}
