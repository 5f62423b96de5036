import { readFileSync } from 'node:fs';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor, type ConnectionOptions } from '@temporalio/client';
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

/** gRPC attempts of a serving process's call before it gives up: about a second, then the caller hears of it. */
const SERVING_CALL_ATTEMPTS = 3;

/**
 * A client for a process that serves requests (the API): it connects on first use, so the
 * process starts and serves whatever needs no Temporal while the frontend is down, and a
 * call fails after a few quick gRPC retries, so an HTTP caller gets a prompt 503 instead of
 * waiting out the SDK's long default retries.
 */
export function lazyServingClient(config: TemporalConfig, dataConverter: DataConverter): Client {
  const tls = tlsOptions(config);
  const connection = Connection.lazy({
    address: config.temporal.address,
    ...(tls ? { tls } : {}),
    interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: SERVING_CALL_ATTEMPTS }))],
  });
  return new Client({ connection, namespace: config.temporal.namespace, dataConverter });
}

/** The worker's connection, with the same TLS settings as the client's. */
export async function connectWorker(config: TemporalConfig): Promise<NativeConnection> {
  const tls = tlsOptions(config) as NativeConnectionOptions['tls'];
  return NativeConnection.connect({ address: config.temporal.address, ...(tls ? { tls } : {}) });
}
