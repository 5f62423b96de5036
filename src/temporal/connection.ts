import { readFileSync } from 'node:fs';
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor, type ClientInterceptors, type ConnectionOptions } from '@temporalio/client';
import { OpenTelemetryWorkflowClientInterceptor } from '@temporalio/interceptors-opentelemetry/lib/client';
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
  return new Client({ connection, namespace: config.temporal.namespace, dataConverter, interceptors: tracingClientInterceptors() });
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
  const connection = Connection.lazy({
    ...connectionOptions(config),
    interceptors: [makeGrpcRetryInterceptor(defaultGrpcRetryOptions({ maxAttempts: SERVING_CALL_ATTEMPTS }))],
  });
  return new Client({ connection, namespace: config.temporal.namespace, dataConverter, interceptors: tracingClientInterceptors() });
}

/** The worker's connection, with the same TLS and API key as the client's. */
export async function connectWorker(config: TemporalConfig): Promise<NativeConnection> {
  const { apiKey, ...rest } = connectionOptions(config);
  const options: NativeConnectionOptions = { ...rest, ...(typeof apiKey === 'string' ? { apiKey } : {}) };
  return NativeConnection.connect(options);
}

/**
 * The OpenTelemetry (v1) client interceptor: a span per start, signal, update and query, its
 * context carried to the workflow in the call's headers. A no-op while tracing is off.
 */
function tracingClientInterceptors(): ClientInterceptors {
  return { workflow: [new OpenTelemetryWorkflowClientInterceptor()] };
}
