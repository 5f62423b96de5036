import type { KMSClient } from '@aws-sdk/client-kms';
import type { DataConverter } from '@temporalio/common';
import { codecKeyAlias, type Config } from '../config/config';
import type { Logger } from '../log';
import { KmsPayloadCodec } from './payload-codec';

/** Loaded by path (client, worker and workflow bundle alike): plain CommonJS, see the files. */
export const PAYLOAD_CONVERTER_PATH = require.resolve('./payload-converter');
export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

/** Longest wait between a worker codec's attempts to reach KMS while it is down. */
const WORKER_KMS_RETRY_MAX_MS = 10_000;

/**
 * The data converter every client and worker of this process uses: the KMS payload codec
 * (which refuses payloads it did not encrypt), the payload converter that turns such a
 * refusal into a `PayloadRefused` failure, and failures whose message and stack travel
 * encoded (see failure-converter.js). A worker's (`forWorker`) waits out a KMS outage
 * rather than failing an encode, which would end the worker; a client's fails fast, so
 * its caller hears of the outage.
 */
export function createDataConverter(
  config: Pick<Config, 'kms' | 'dataKeyCache'>,
  kms: Pick<KMSClient, 'send'>,
  options: { readonly log?: Pick<Logger, 'warn'>; readonly forWorker?: boolean } = {},
): DataConverter {
  return {
    payloadCodecs: [
      new KmsPayloadCodec({
        kms,
        masterKeyId: codecKeyAlias(config),
        limits: config.dataKeyCache,
        ...(options.log ? { log: options.log } : {}),
        ...(options.forWorker ? { waitOutKmsOutages: { maxDelayMs: WORKER_KMS_RETRY_MAX_MS } } : {}),
      }),
    ],
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    failureConverterPath: FAILURE_CONVERTER_PATH,
  };
}
