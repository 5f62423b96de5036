import { Runtime } from '@temporalio/worker';
import { freePort } from '../stack/process';

/**
 * Installs the Temporal SDK's Core runtime for this process with its Prometheus exporter on
 * a loopback port of its own, picked free here, and returns where it serves. Our metrics
 * server fetches that text and serves it under `/metrics` beside Ledgerlock's (one scrape
 * target per process); the port itself is an implementation detail, never on the public
 * listener.
 *
 * `Runtime.install` can run once per process, before any worker or NativeConnection exists:
 * call this first thing in a process that runs workers. Where the runtime was already
 * made (a test that installed its own), nothing is installed and `undefined` comes back.
 */
export async function installTemporalRuntime(): Promise<string | undefined> {
  if (Runtime._instance !== undefined) return undefined;
  const port = await freePort();
  Runtime.install({
    telemetryOptions: {
      // `temporal_` is the SDK's default prefix, written out: the dashboard and alerts rely on it.
      metrics: { metricPrefix: 'temporal_', prometheus: { bindAddress: `127.0.0.1:${port}`, useSecondsForDurations: true } },
    },
  });
  return `http://127.0.0.1:${port}/metrics`;
}
