import { createCipheriv, createDecipheriv, createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

/**
 * A local, development-only server for the subset of the AWS KMS API Ledgerlock uses,
 * speaking KMS's own wire protocol (JSON 1.1 over HTTP, `X-Amz-Target: TrentService.*`),
 * so the application talks to it through the unmodified `@aws-sdk/client-kms`, exactly
 * as it talks to AWS KMS.
 *
 * It exists because the pinned local-kms cannot be installed on machines whose Go module
 * proxy does not serve it; with `LOCAL_KMS_PATH` set, local-kms is used instead. Key
 * material is real (AES-256-GCM, encryption context as AAD; RFC 2104 HMAC for HMAC keys)
 * but kept in a plain JSON file: never use this outside development and tests. Request
 * signatures are not checked.
 */

const ACCOUNT_ID = '111122223333';
/** HMAC key specs, each with its MAC algorithm and key length in bytes, as AWS KMS defines them. */
const HMAC_SPECS = {
  HMAC_224: { algorithm: 'HMAC_SHA_224', digest: 'sha224', bytes: 28 },
  HMAC_256: { algorithm: 'HMAC_SHA_256', digest: 'sha256', bytes: 32 },
  HMAC_384: { algorithm: 'HMAC_SHA_384', digest: 'sha384', bytes: 48 },
  HMAC_512: { algorithm: 'HMAC_SHA_512', digest: 'sha512', bytes: 64 },
} as const;
type HmacSpec = keyof typeof HMAC_SPECS;
const MAX_MAC_MESSAGE_BYTES = 4096;
const CIPHERTEXT_VERSION = 1;
const KEY_ID_BYTES = 36;

type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

interface StoredKey {
  keyId: string;
  description: string;
  state: KeyState;
  created: number;
  deletionDate?: number;
  /** Absent in files written before HMAC keys existed: SYMMETRIC_DEFAULT. */
  spec?: 'SYMMETRIC_DEFAULT' | HmacSpec;
  /** Base64 key material: AES-256 for SYMMETRIC_DEFAULT, else the HMAC key. */
  material: string;
}

interface State {
  keys: Record<string, StoredKey>;
  /** alias name → key id */
  aliases: Record<string, string>;
}

class KmsError extends Error {
  constructor(readonly type: string, message: string, readonly status = 400) {
    super(message);
  }
}

export interface KmsDevServerOptions {
  /** Where keys persist; in memory only when absent. */
  readonly dataDir?: string;
  readonly region: string;
  readonly port?: number;
  readonly host?: string;
}

export interface KmsDevServer {
  readonly url: string;
  readonly port: number;
  /** Calls received per operation since start, for benchmarks that count KMS round trips. */
  readonly calls: Readonly<Record<string, number>>;
  close(): Promise<void>;
}

export async function startKmsDevServer(options: KmsDevServerOptions): Promise<KmsDevServer> {
  const file = options.dataDir ? path.join(options.dataDir, 'kms-dev-server.json') : undefined;
  const state: State = file && existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as State) : { keys: {}, aliases: {} };
  const persist = () => {
    if (!file) return;
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(`${file}.tmp`, JSON.stringify(state), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  };
  const kms = new DevKms(state, options.region, persist);
  const calls: Record<string, number> = {};

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      const operation = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
      let status = 200;
      let body: unknown;
      try {
        if (req.method !== 'POST' || !operation) throw new KmsError('UnknownOperationException', `unsupported request ${req.method} ${target}`);
        calls[operation] = (calls[operation] ?? 0) + 1;
        const input = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : {};
        body = kms.handle(operation, input);
      } catch (err) {
        const known = err instanceof KmsError ? err : new KmsError('KMSInternalException', 'internal error', 500);
        status = known.status;
        body = { __type: known.type, message: known.message };
        res.setHeader('x-amzn-ErrorType', known.type);
      }
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

class DevKms {
  constructor(
    private readonly state: State,
    private readonly region: string,
    private readonly persist: () => void,
  ) {}

  handle(operation: string, input: Record<string, unknown>): unknown {
    switch (operation) {
      case 'CreateKey':
        return this.createKey(input);
      case 'DescribeKey':
        return { KeyMetadata: this.metadata(this.resolve(str(input, 'KeyId'))) };
      case 'ListKeys':
        return { Keys: Object.values(this.state.keys).map((k) => ({ KeyId: k.keyId, KeyArn: this.keyArn(k.keyId) })), Truncated: false };
      case 'EnableKey':
      case 'DisableKey':
        return this.setEnabled(str(input, 'KeyId'), operation === 'EnableKey');
      case 'ScheduleKeyDeletion':
        return this.scheduleDeletion(input);
      case 'CancelKeyDeletion':
        return this.cancelDeletion(str(input, 'KeyId'));
      case 'CreateAlias':
        return this.createAlias(str(input, 'AliasName'), str(input, 'TargetKeyId'));
      case 'UpdateAlias':
        return this.updateAlias(str(input, 'AliasName'), str(input, 'TargetKeyId'));
      case 'DeleteAlias':
        return this.deleteAlias(str(input, 'AliasName'));
      case 'ListAliases':
        return this.listAliases(input);
      case 'GenerateDataKey':
      case 'GenerateDataKeyWithoutPlaintext':
        return this.generateDataKey(input, operation === 'GenerateDataKey');
      case 'Encrypt': {
        const key = this.usable(str(input, 'KeyId'));
        return this.encryptResult(key, blob(input, 'Plaintext'), context(input, 'EncryptionContext'));
      }
      case 'Decrypt':
        return this.decrypt(input);
      case 'ReEncrypt':
        return this.reEncrypt(input);
      case 'GenerateMac':
        return this.generateMac(input);
      case 'VerifyMac':
        return this.verifyMac(input);
      case 'GenerateRandom':
        return { Plaintext: randomBytes(num(input, 'NumberOfBytes') ?? 32).toString('base64') };
      default:
        throw new KmsError('UnsupportedOperationException', `${operation} is not supported by the development KMS`);
    }
  }

  private createKey(input: Record<string, unknown>) {
    const spec = input.KeySpec ?? input.CustomerMasterKeySpec ?? 'SYMMETRIC_DEFAULT';
    let material: Buffer;
    if (spec === 'SYMMETRIC_DEFAULT') {
      if ((input.KeyUsage ?? 'ENCRYPT_DECRYPT') !== 'ENCRYPT_DECRYPT') throw new KmsError('ValidationException', 'KeyUsage must be ENCRYPT_DECRYPT for a SYMMETRIC_DEFAULT key');
      material = randomBytes(32);
    } else if (isHmacSpec(spec)) {
      // As AWS KMS: an HMAC key needs its usage spelt out.
      if (input.KeyUsage !== 'GENERATE_VERIFY_MAC') throw new KmsError('ValidationException', 'KeyUsage must be GENERATE_VERIFY_MAC for an HMAC key');
      material = randomBytes(HMAC_SPECS[spec].bytes);
    } else {
      throw new KmsError('UnsupportedOperationException', `KeySpec ${String(spec)} is not supported by the development KMS`);
    }
    const key: StoredKey = {
      keyId: randomUUID(),
      description: typeof input.Description === 'string' ? input.Description : '',
      state: 'Enabled',
      created: Date.now() / 1000,
      ...(spec === 'SYMMETRIC_DEFAULT' ? {} : { spec }),
      material: material.toString('base64'),
    };
    this.state.keys[key.keyId] = key;
    this.persist();
    return { KeyMetadata: this.metadata(key) };
  }

  private setEnabled(keyId: string, enabled: boolean) {
    const key = this.resolve(keyId);
    if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${this.keyArn(key.keyId)} is pending deletion.`);
    key.state = enabled ? 'Enabled' : 'Disabled';
    this.persist();
    return {};
  }

  private scheduleDeletion(input: Record<string, unknown>) {
    const key = this.resolve(str(input, 'KeyId'));
    const days = num(input, 'PendingWindowInDays') ?? 30;
    if (days < 7 || days > 30) throw new KmsError('ValidationException', 'PendingWindowInDays must be between 7 and 30');
    if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${this.keyArn(key.keyId)} is pending deletion.`);
    key.state = 'PendingDeletion';
    key.deletionDate = Date.now() / 1000 + days * 86_400;
    this.persist();
    return { KeyId: this.keyArn(key.keyId), DeletionDate: key.deletionDate, KeyState: key.state, PendingWindowInDays: days };
  }

  private cancelDeletion(keyId: string) {
    const key = this.resolve(keyId);
    if (key.state !== 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${this.keyArn(key.keyId)} is not pending deletion.`);
    key.state = 'Disabled';
    delete key.deletionDate;
    this.persist();
    return { KeyId: this.keyArn(key.keyId) };
  }

  private createAlias(alias: string, target: string) {
    assertAliasName(alias);
    if (this.state.aliases[alias]) throw new KmsError('AlreadyExistsException', `An alias with the name ${this.aliasArn(alias)} already exists`);
    this.state.aliases[alias] = this.resolveKeyOnly(target).keyId;
    this.persist();
    return {};
  }

  private updateAlias(alias: string, target: string) {
    if (!this.state.aliases[alias]) throw new KmsError('NotFoundException', `Alias ${this.aliasArn(alias)} is not found.`);
    this.state.aliases[alias] = this.resolveKeyOnly(target).keyId;
    this.persist();
    return {};
  }

  private deleteAlias(alias: string) {
    if (!this.state.aliases[alias]) throw new KmsError('NotFoundException', `Alias ${this.aliasArn(alias)} is not found.`);
    delete this.state.aliases[alias];
    this.persist();
    return {};
  }

  private listAliases(input: Record<string, unknown>) {
    const only = typeof input.KeyId === 'string' ? this.resolve(input.KeyId).keyId : undefined;
    const aliases = Object.entries(this.state.aliases)
      .filter(([, keyId]) => !only || keyId === only)
      .map(([name, keyId]) => ({ AliasName: name, AliasArn: this.aliasArn(name), TargetKeyId: keyId }));
    return { Aliases: aliases, Truncated: false };
  }

  private generateDataKey(input: Record<string, unknown>, withPlaintext: boolean) {
    const key = this.usable(str(input, 'KeyId'));
    const spec = input.KeySpec;
    const bytes = num(input, 'NumberOfBytes') ?? (spec === 'AES_128' ? 16 : spec === 'AES_256' ? 32 : undefined);
    if (bytes === undefined || bytes < 1 || bytes > 1024) throw new KmsError('ValidationException', 'specify KeySpec (AES_128 or AES_256) or NumberOfBytes (1-1024)');
    const plaintext = randomBytes(bytes);
    const encrypted = this.encryptResult(key, plaintext, context(input, 'EncryptionContext'));
    return withPlaintext ? { ...encrypted, Plaintext: plaintext.toString('base64') } : encrypted;
  }

  private decrypt(input: Record<string, unknown>) {
    const { key, plaintext } = this.open(blob(input, 'CiphertextBlob'), context(input, 'EncryptionContext'));
    if (typeof input.KeyId === 'string' && this.resolve(input.KeyId).keyId !== key.keyId) {
      throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify the key that encrypted the ciphertext.');
    }
    return { KeyId: this.keyArn(key.keyId), Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  }

  private reEncrypt(input: Record<string, unknown>) {
    const { key: source, plaintext } = this.open(blob(input, 'CiphertextBlob'), context(input, 'SourceEncryptionContext'));
    if (typeof input.SourceKeyId === 'string' && this.resolve(input.SourceKeyId).keyId !== source.keyId) {
      throw new KmsError('IncorrectKeyException', 'The source key ID does not identify the key that encrypted the ciphertext.');
    }
    const destination = this.usable(str(input, 'DestinationKeyId'));
    const result = this.encryptResult(destination, plaintext, context(input, 'DestinationEncryptionContext'));
    return {
      ...result,
      SourceKeyId: this.keyArn(source.keyId),
      SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  }

  /** Ciphertext: version (1) | key id (36, ASCII) | IV (12) | tag (16) | data. AAD: the canonical encryption context. */
  private encryptResult(key: StoredKey, plaintext: Buffer, encryptionContext: Record<string, string>) {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', Buffer.from(key.material, 'base64'), iv);
    cipher.setAAD(canonicalContext(encryptionContext));
    const data = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const blobOut = Buffer.concat([Buffer.from([CIPHERTEXT_VERSION]), Buffer.from(key.keyId, 'ascii'), iv, cipher.getAuthTag(), data]);
    return { CiphertextBlob: blobOut.toString('base64'), KeyId: this.keyArn(key.keyId), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  }

  private open(ciphertext: Buffer, encryptionContext: Record<string, string>): { key: StoredKey; plaintext: Buffer } {
    const header = 1 + KEY_ID_BYTES + 12 + 16;
    if (ciphertext.length < header || ciphertext[0] !== CIPHERTEXT_VERSION) throw invalidCiphertext();
    const keyId = ciphertext.subarray(1, 1 + KEY_ID_BYTES).toString('ascii');
    const key = this.state.keys[keyId];
    if (!key) throw invalidCiphertext();
    this.assertUsable(key);
    if (hmacSpec(key)) throw wrongUsage(this.keyArn(key.keyId), 'GENERATE_VERIFY_MAC');
    const iv = ciphertext.subarray(1 + KEY_ID_BYTES, 1 + KEY_ID_BYTES + 12);
    const tag = ciphertext.subarray(1 + KEY_ID_BYTES + 12, header);
    try {
      const decipher = createDecipheriv('aes-256-gcm', Buffer.from(key.material, 'base64'), iv);
      decipher.setAAD(canonicalContext(encryptionContext));
      decipher.setAuthTag(tag);
      return { key, plaintext: Buffer.concat([decipher.update(ciphertext.subarray(header)), decipher.final()]) };
    } catch {
      throw invalidCiphertext();
    }
  }

  /** A key that may encrypt: enabled, and symmetric. */
  private usable(keyRef: string): StoredKey {
    const key = this.resolve(keyRef);
    this.assertUsable(key);
    if (hmacSpec(key)) throw wrongUsage(this.keyArn(key.keyId), 'GENERATE_VERIFY_MAC');
    return key;
  }

  /** An enabled HMAC key and the algorithm the request names, which must be the key's. */
  private macKey(input: Record<string, unknown>): { key: StoredKey; spec: (typeof HMAC_SPECS)[HmacSpec]; message: Buffer } {
    const key = this.resolve(str(input, 'KeyId'));
    this.assertUsable(key);
    const keySpec = hmacSpec(key);
    if (!keySpec) throw wrongUsage(this.keyArn(key.keyId), 'ENCRYPT_DECRYPT');
    const spec = HMAC_SPECS[keySpec];
    const algorithm = str(input, 'MacAlgorithm');
    if (algorithm !== spec.algorithm) throw new KmsError('InvalidKeyUsageException', `${this.keyArn(key.keyId)} key spec ${keySpec} does not support MacAlgorithm ${algorithm}.`);
    const message = blob(input, 'Message');
    if (message.length < 1 || message.length > MAX_MAC_MESSAGE_BYTES) throw new KmsError('ValidationException', `Message must be 1 to ${MAX_MAC_MESSAGE_BYTES} bytes`);
    return { key, spec, message };
  }

  private generateMac(input: Record<string, unknown>) {
    const { key, spec, message } = this.macKey(input);
    const mac = createHmac(spec.digest, Buffer.from(key.material, 'base64')).update(message).digest();
    return { KeyId: this.keyArn(key.keyId), Mac: mac.toString('base64'), MacAlgorithm: spec.algorithm };
  }

  /** As AWS KMS: a MAC that does not verify is an error (KMSInvalidMacException), never `MacValid: false`. */
  private verifyMac(input: Record<string, unknown>) {
    const { key, spec, message } = this.macKey(input);
    const expected = createHmac(spec.digest, Buffer.from(key.material, 'base64')).update(message).digest();
    const given = blob(input, 'Mac');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new KmsError('KMSInvalidMacException', 'The request was rejected because the HMAC verification failed.');
    }
    return { KeyId: this.keyArn(key.keyId), MacValid: true, MacAlgorithm: spec.algorithm };
  }

  private assertUsable(key: StoredKey): void {
    if (key.state === 'Disabled') throw new KmsError('DisabledException', `${this.keyArn(key.keyId)} is disabled.`);
    if (key.state === 'PendingDeletion') throw new KmsError('KMSInvalidStateException', `${this.keyArn(key.keyId)} is pending deletion.`);
  }

  /** A key from its id, key ARN, alias name or alias ARN. */
  private resolve(ref: string): StoredKey {
    const aliasName = ref.startsWith('alias/') ? ref : ref.match(/^arn:aws:kms:[^:]+:\d+:(alias\/.+)$/)?.[1];
    if (aliasName) {
      const keyId = this.state.aliases[aliasName];
      if (!keyId) throw new KmsError('NotFoundException', `Alias ${this.aliasArn(aliasName)} is not found.`);
      return this.state.keys[keyId]!;
    }
    return this.resolveKeyOnly(ref);
  }

  private resolveKeyOnly(ref: string): StoredKey {
    const keyId = ref.match(/^arn:aws:kms:[^:]+:\d+:key\/(.+)$/)?.[1] ?? ref;
    const key = this.state.keys[keyId];
    if (!key) throw new KmsError('NotFoundException', `Key '${this.keyArn(keyId)}' does not exist`);
    return key;
  }

  private metadata(key: StoredKey) {
    const keySpec = hmacSpec(key);
    const usage = keySpec
      ? { KeyUsage: 'GENERATE_VERIFY_MAC', KeySpec: keySpec, CustomerMasterKeySpec: keySpec, MacAlgorithms: [HMAC_SPECS[keySpec].algorithm] }
      : { KeyUsage: 'ENCRYPT_DECRYPT', KeySpec: 'SYMMETRIC_DEFAULT', CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT', EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'] };
    return {
      AWSAccountId: ACCOUNT_ID,
      KeyId: key.keyId,
      Arn: this.keyArn(key.keyId),
      CreationDate: key.created,
      Enabled: key.state === 'Enabled',
      Description: key.description,
      KeyState: key.state,
      ...(key.deletionDate ? { DeletionDate: key.deletionDate } : {}),
      Origin: 'AWS_KMS',
      KeyManager: 'CUSTOMER',
      ...usage,
      MultiRegion: false,
    };
  }

  private keyArn(keyId: string): string {
    return `arn:aws:kms:${this.region}:${ACCOUNT_ID}:key/${keyId}`;
  }

  private aliasArn(alias: string): string {
    return `arn:aws:kms:${this.region}:${ACCOUNT_ID}:${alias}`;
  }
}

function isHmacSpec(spec: unknown): spec is HmacSpec {
  return typeof spec === 'string' && Object.hasOwn(HMAC_SPECS, spec);
}

function hmacSpec(key: StoredKey): HmacSpec | undefined {
  return key.spec && key.spec !== 'SYMMETRIC_DEFAULT' ? key.spec : undefined;
}

function wrongUsage(keyArn: string, usage: string): KmsError {
  return new KmsError('InvalidKeyUsageException', `${keyArn} key usage is ${usage} which is not valid for this operation.`);
}

function invalidCiphertext(): KmsError {
  return new KmsError('InvalidCiphertextException', 'The ciphertext is invalid or was not encrypted under this context.');
}

function assertAliasName(alias: string): void {
  if (!/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(alias) || alias.startsWith('alias/aws/')) {
    throw new KmsError('ValidationException', `Alias must begin with 'alias/' followed by letters, digits, /, _ or -, and not 'alias/aws/'`);
  }
}

function str(input: Record<string, unknown>, field: string): string {
  const value = input[field];
  if (typeof value !== 'string' || value === '') throw new KmsError('ValidationException', `${field} is required`);
  return value;
}

function num(input: Record<string, unknown>, field: string): number | undefined {
  const value = input[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new KmsError('ValidationException', `${field} must be an integer`);
  return value;
}

function blob(input: Record<string, unknown>, field: string): Buffer {
  return Buffer.from(str(input, field), 'base64');
}

function context(input: Record<string, unknown>, field: string): Record<string, string> {
  const value = input[field];
  if (value === undefined) return {};
  if (!value || typeof value !== 'object' || Object.values(value).some((v) => typeof v !== 'string')) {
    throw new KmsError('ValidationException', `${field} must map strings to strings`);
  }
  return value as Record<string, string>;
}

function canonicalContext(encryptionContext: Record<string, string>): Buffer {
  const sorted = Object.keys(encryptionContext)
    .sort()
    .map((k) => [k, encryptionContext[k]]);
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}
