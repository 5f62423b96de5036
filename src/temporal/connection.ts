import { readFileSync } from 'node:fs';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import type { Config } from '../config/config';

type TemporalConfig = Pick<Config, 'temporal'>;

function tlsOptions(config: TemporalConfig): ConnectionOptions['tls'] {
  const tls = config.temporal.tls;
  if (!tls) return undefined;
  return {
    clientCertPair: { crt: readFileSync(tls.certPath), key: readFileSync(tls.keyPath) },
    ...(tls.caPath ? { serverRootCACertificate: readFileSync(tls.caPath) } : {}),
  };
}

/**
 * A client; mTLS when TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY are set. The data converter
 * is required so that nothing this client sends reaches Temporal unencrypted.
 */
export async function connectClient(config: TemporalConfig, dataConverter: DataConverter): Promise<Client> {
  const tls = tlsOptions(config);
  const connection = await Connection.connect({ address: config.temporal.address, ...(tls ? { tls } : {}) });
  return new Client({ connection, namespace: config.temporal.namespace, dataConverter });
}

/** The worker's connection, with the same TLS settings as the client's. */
export async function connectWorker(config: TemporalConfig): Promise<NativeConnection> {
  const tls = tlsOptions(config) as NativeConnectionOptions['tls'];
  return NativeConnection.connect({ address: config.temporal.address, ...(tls ? { tls } : {}) });
}
