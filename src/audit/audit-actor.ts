import { createHash } from 'node:crypto';
import { GenerateMacCommand, type KMSClient } from '@aws-sdk/client-kms';
import { auditActorKeyAlias, type Config } from '../config/config';

/**
 * Who the audit trail says acted, for a verified token. Service identities
 * (`billing-service`, `ops-alice`) are stored as they are. A subject that may name a
 * person (an email address, what many identity providers put in `sub` for operators; a
 * name; an IdP user id such as `auth0|…`) is stored as a pseudonym instead: an HMAC of
 * issuer and subject under a KMS key that never leaves KMS. The same operator always gets
 * the same pseudonym, so the trail still links their actions; whoever holds the token
 * issuer's records can tell who it was, while the trail itself holds no personal data and
 * outlives any erasure request.
 */

/** What may be stored as is: a short slug of letters, digits and `. _ : -`, no `@`, no spaces. */
const SERVICE_IDENTITY = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/;
export const PSEUDONYM_PREFIX = 'pseudonym:';
// Pseudonyms of the operators seen recently; a few thousand operators at most in practice.
const MAX_CACHED = 10_000;

export type ActorOf = (subject: string) => Promise<string>;

/** The audit key is unavailable (KMS down, alias missing): the caller may retry later. */
export class AuditActorUnavailableError extends Error {
  constructor(cause: unknown) {
    super('the audit trail cannot pseudonymise this token subject now: KMS GenerateMac failed', { cause });
    this.name = 'AuditActorUnavailableError';
  }
}

export function isServiceIdentity(subject: string): boolean {
  return SERVICE_IDENTITY.test(subject) && !subject.startsWith(PSEUDONYM_PREFIX);
}

/**
 * Resolves a token subject (of the configured issuer) to its audit actor. KMS is asked
 * once per personal subject and process; service identities never reach it.
 *
 * @throws AuditActorUnavailableError when KMS cannot compute the pseudonym.
 */
export function createActorOf(deps: { readonly kms: Pick<KMSClient, 'send'>; readonly config: Pick<Config, 'kms' | 'auth'> }): ActorOf {
  const keyId = auditActorKeyAlias(deps.config);
  const cache = new Map<string, Promise<string>>();
  return async (subject) => {
    if (isServiceIdentity(subject)) return subject;
    let pseudonym = cache.get(subject);
    if (!pseudonym) {
      if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!);
      // A digest keeps the message within KMS's 4096 bytes whatever the subject's length.
      const message = createHash('sha256').update(JSON.stringify([deps.config.auth.issuer, subject]), 'utf8').digest();
      pseudonym = deps.kms
        .send(new GenerateMacCommand({ KeyId: keyId, MacAlgorithm: 'HMAC_SHA_256', Message: message }))
        .then((out) => `${PSEUDONYM_PREFIX}${Buffer.from(out.Mac!).toString('hex').slice(0, 32)}`)
        .catch((err: unknown) => {
          cache.delete(subject);
          throw new AuditActorUnavailableError(err);
        });
      cache.set(subject, pseudonym);
    }
    return pseudonym;
  };
}
