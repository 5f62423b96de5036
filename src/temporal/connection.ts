import { readFileSync } from 'node:fs';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import type { Config } from '../config/config';

type TemporalConfig = Pick<Config, 'temporal'>;

/**
 * What client and worker connections share: the address, TLS (mutual when a client pair
 * is configured) and Temporal Cloud's API key, which is only ever sent over TLS.
 */
export function connectionOptions(config: TemporalConfig): Pick<ConnectionOptions, 'address' | 'tls' | 'apiKey'> {
  const { address, tls, apiKey } = config.temporal;
  return {
    address,
    ...(tls
      ? {
          tls: {
            ...(tls.clientCert ? { clientCertPair: { crt: readFileSync(tls.clientCert.certPath), key: readFileSync(tls.clientCert.keyPath) } } : {}),
            ...(tls.caPath ? { serverRootCACertificate: readFileSync(tls.caPath) } : {}),
          },
        }
      : {}),
    ...(apiKey ? { apiKey } : {}),
  };
}

/**
 * A client; TLS and an API key as configured. The data converter is required so that
 * nothing this client sends reaches Temporal unencrypted.
 */
export async function connectClient(config: TemporalConfig, dataConverter: DataConverter): Promise<Client> {
  const connection = await Connection.connect(connectionOptions(config));
  return new Client({ connection, namespace: config.temporal.namespace, dataConverter });
}

/** The worker's connection, with the same TLS and API key as the client's. */
export async function connectWorker(config: TemporalConfig): Promise<NativeConnection> {
  const { apiKey, ...rest } = connectionOptions(config);
  const options: NativeConnectionOptions = { ...rest, ...(typeof apiKey === 'string' ? { apiKey } : {}) };
  return NativeConnection.connect(options);
}
