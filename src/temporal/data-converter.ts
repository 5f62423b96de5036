import type { KMSClient } from '@aws-sdk/client-kms';
import type { DataConverter } from '@temporalio/common';
import { codecKeyAlias, type Config } from '../config/config';
import { KmsPayloadCodec } from './payload-codec';

/**
 * The data converter every client and worker of this process uses: the KMS payload codec,
 * and failures whose message and stack travel encoded (see failure-converter.ts).
 */
export function createDataConverter(config: Pick<Config, 'kms' | 'dataKeyCache'>, kms: Pick<KMSClient, 'send'>): DataConverter {
  return {
    payloadCodecs: [new KmsPayloadCodec({ kms, masterKeyId: codecKeyAlias(config), limits: config.dataKeyCache })],
    failureConverterPath: require.resolve('./failure-converter'),
  };
}
