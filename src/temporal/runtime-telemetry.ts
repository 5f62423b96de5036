import { Runtime, makeTelemetryFilterString, type TelemetryOptions } from '@temporalio/worker';
import type { LogLevel } from '../config/config';
import { temporalLogger, type Logger } from '../log';
import { freePort } from '../stack/process';

const CORE_LEVEL = { debug: 'DEBUG', info: 'INFO', warn: 'WARN', error: 'ERROR' } as const;

/**
 * Installs the Temporal SDK's process-wide Runtime once, before any worker connection, so
 * that every SDK log line (worker lifecycle, `log` in activities and workflows, and Core's
 * own, forwarded) is written by our pino logger with its redaction. The Runtime can be
 * installed only once per process: telemetry that also needs it (metrics) is passed here.
 */
export function installTemporalRuntime(log: Logger, level: LogLevel, telemetry: Omit<TelemetryOptions, 'logging'> = {}): Runtime {
  return Runtime.install({
    logger: temporalLogger(log),
    telemetryOptions: {
      ...telemetry,
      // Core at our level but never below INFO (its DEBUG is per poll), third-party crates at WARN.
      logging: { filter: makeTelemetryFilterString({ core: level === 'debug' ? 'INFO' : CORE_LEVEL[level], other: 'WARN' }), forward: {} },
    },
  });
}

/**
 * The SDK's Prometheus exporter, for {@link installTemporalRuntime}: on a loopback port of
 * its own, picked free here, with the default `temporal_` prefix and durations in seconds.
 * Our metrics server fetches `url` and serves it under `/metrics` beside Ledgerlock's (one
 * scrape target per process); the port itself is an implementation detail, never public.
 */
export async function temporalPrometheusExporter(): Promise<{ url: string; telemetry: Pick<TelemetryOptions, 'metrics'> }> {
  const port = await freePort();
  return {
    url: `http://127.0.0.1:${port}/metrics`,
    // `temporal_` written out: the dashboard and the alerts rely on it.
    telemetry: { metrics: { metricPrefix: 'temporal_', prometheus: { bindAddress: `127.0.0.1:${port}`, useSecondsForDurations: true } } },
  };
}
