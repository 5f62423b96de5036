import { z } from 'zod';
import { DEFAULT_DUNNING_POLICY, type DunningPolicy } from '../../workflows/dunning-contracts';

/**
 * Dunning policies from configuration: one default (DUNNING_POLICY, over Ledgerlock's
 * Stripe-like default) and overrides per Stripe price (DUNNING_POLICY_BY_PRICE), each a
 * JSON object of the fields it changes. A campaign pins the policy it starts with.
 */

const seconds = z.number().int().min(0).max(365 * 86_400);

export const policyOverrideSchema = z
  .object({
    retryOffsetsSeconds: z
      .array(seconds)
      .min(1)
      .max(20)
      .refine((offsets) => offsets.every((o, i) => i === 0 || o >= offsets[i - 1]!), 'must be ascending'),
    maxAttempts: z.number().int().min(1).max(20),
    gracePeriodSeconds: seconds,
    finalAction: z.enum(['cancel', 'mark_unpaid', 'leave_past_due']),
    hardDeclineCodes: z.array(z.string().regex(/^[a-z_]{1,64}$/)).max(100),
  })
  .partial()
  .strict();

export type PolicyOverride = z.infer<typeof policyOverrideSchema>;

export interface DunningPolicies {
  readonly default: DunningPolicy;
  readonly byPrice: Readonly<Record<string, DunningPolicy>>;
}

export function buildDunningPolicies(defaultOverride: PolicyOverride | undefined, byPrice: Record<string, PolicyOverride> | undefined): DunningPolicies {
  const base: DunningPolicy = { ...DEFAULT_DUNNING_POLICY, ...defaultOverride, name: 'default' };
  return {
    default: base,
    byPrice: Object.fromEntries(Object.entries(byPrice ?? {}).map(([priceId, override]) => [priceId, { ...base, ...override, name: priceId }])),
  };
}

export function policyFor(policies: DunningPolicies, priceId: string): DunningPolicy {
  return policies.byPrice[priceId] ?? policies.default;
}

/** Parses a JSON variable with `schema`; the message names what is wrong, never the value. */
export function parseJsonVariable<T>(text: string, schema: z.ZodType<T>): { ok: true; value: T } | { ok: false; message: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, message: 'must be JSON' };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  const issue = parsed.error.issues[0]!;
  return { ok: false, message: `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}` };
}
