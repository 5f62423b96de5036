import type { KMSClient } from '@aws-sdk/client-kms';
import type { DataConverter } from '@temporalio/common';
import { codecKeyAlias, type Config } from '../config/config';
import { KmsPayloadCodec } from './payload-codec';

/** Longest wait between a worker codec's attempts to reach KMS while it is down. */
const WORKER_KMS_RETRY_MAX_MS = 10_000;

/**
 * The data converter every client and worker of this process uses: the KMS payload codec,
 * and failures whose message and stack travel encoded (see failure-converter.ts). A
 * worker's (`forWorker`) waits out a KMS outage rather than failing an encode, which would
 * end the worker; a client's fails fast, so its caller hears of the outage.
 */
export function createDataConverter(config: Pick<Config, 'kms' | 'dataKeyCache'>, kms: Pick<KMSClient, 'send'>, options: { forWorker?: boolean } = {}): DataConverter {
  return {
    payloadCodecs: [
      new KmsPayloadCodec({
        kms,
        masterKeyId: codecKeyAlias(config),
        limits: config.dataKeyCache,
        ...(options.forWorker ? { waitOutKmsOutages: { maxDelayMs: WORKER_KMS_RETRY_MAX_MS } } : {}),
      }),
    ],
    failureConverterPath: require.resolve('./failure-converter'),
  };
}
