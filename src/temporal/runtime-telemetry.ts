import { Runtime, makeTelemetryFilterString, type TelemetryOptions } from '@temporalio/worker';
import type { LogLevel } from '../config/config';
import { temporalLogger, type Logger } from '../log';

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
