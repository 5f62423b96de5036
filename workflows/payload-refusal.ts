import { ApplicationFailure } from '@temporalio/common';

/**
 * What happens to a payload our codec did not encrypt (plaintext from a client without the
 * codec, or anything else foreign): the codec withholds its content and hands on a marker
 * payload of {@link REFUSED_ENCODING}; the payload converter turns that marker into
 * {@link REFUSED} inside workflows and into a {@link PAYLOAD_REFUSED} failure everywhere
 * else; the workflow interceptors (payload-authenticity.ts) refuse whatever carries it.
 *
 * Pure and sandbox-safe. The strings are persisted nowhere but must agree with
 * src/temporal/payload-converter.js (plain CommonJS, so it cannot import this file); a unit
 * test keeps them in step.
 */
export const REFUSED_ENCODING = 'binary/ledgerlock-refused';

/** The failure type of a refused payload: non-retryable, and its message names no content. */
export const PAYLOAD_REFUSED = 'PayloadRefused';

export const REFUSED_MARK = '__ledgerlockRefusedPayload';

/** The value a refused payload converts to inside a workflow. */
export const REFUSED: Readonly<Record<typeof REFUSED_MARK, true>> = Object.freeze({ [REFUSED_MARK]: true as const });

export function isRefused(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as Record<string, unknown>)[REFUSED_MARK] === true;
}

/** `where` names the kind of payload (workflow input, update, query, activity result) and a name, never content. */
export function payloadRefused(where: string): ApplicationFailure {
  return ApplicationFailure.create({
    type: PAYLOAD_REFUSED,
    nonRetryable: true,
    message: `${where} refused: a payload was not encrypted by Ledgerlock's payload codec`,
  });
}
