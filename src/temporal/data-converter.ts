import type { KMSClient } from '@aws-sdk/client-kms';
import type { DataConverter } from '@temporalio/common';
import { codecKeyAlias, type Config } from '../config/config';
import type { Logger } from '../log';
import { KmsPayloadCodec } from './payload-codec';

/** Loaded by path (client, worker and workflow bundle alike): plain CommonJS, see the files. */
export const PAYLOAD_CONVERTER_PATH = require.resolve('./payload-converter');
export const FAILURE_CONVERTER_PATH = require.resolve('./failure-converter');

/**
 * The data converter every client and worker of this process uses: the KMS payload codec
 * (which refuses payloads it did not encrypt), the payload converter that turns such a
 * refusal into a `PayloadRefused` failure, and failures whose message and stack travel
 * encoded (see failure-converter.js).
 */
export function createDataConverter(
  config: Pick<Config, 'kms' | 'dataKeyCache'>,
  kms: Pick<KMSClient, 'send'>,
  log?: Pick<Logger, 'warn'>,
): DataConverter {
  return {
    payloadCodecs: [new KmsPayloadCodec({ kms, masterKeyId: codecKeyAlias(config), limits: config.dataKeyCache, ...(log ? { log } : {}) })],
    payloadConverterPath: PAYLOAD_CONVERTER_PATH,
    failureConverterPath: FAILURE_CONVERTER_PATH,
  };
}
