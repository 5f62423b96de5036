import { z } from 'zod';

/** A customer's personal data as callers send it. Card data never: only Stripe `pm_` ids elsewhere. */
export const customerProfileSchema = z
  .object({
    email: z.email().max(254),
    name: z.string().trim().min(1).max(200),
    country: z
      .string()
      .regex(/^[A-Za-z]{2}$/, 'must be an ISO 3166-1 alpha-2 country code')
      .transform((c) => c.toUpperCase()),
    address: z
      .object({
        line1: z.string().min(1).max(200),
        line2: z.string().max(200).optional(),
        city: z.string().min(1).max(100),
        postalCode: z.string().min(1).max(20),
        state: z.string().max(100).optional(),
      })
      .strict()
      .optional(),
    phone: z
      .string()
      .regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 phone number such as +4915112345678')
      .optional(),
    taxId: z.string().min(1).max(50).optional(),
  })
  .strict();

export type CustomerProfile = z.infer<typeof customerProfileSchema>;

/** The encrypted columns of a customer row; names are the columns', part of each ciphertext's AAD. */
export const PERSONAL_FIELDS = ['email', 'name', 'address', 'phone', 'tax_id'] as const;
export type PersonalField = (typeof PERSONAL_FIELDS)[number];

/**
 * A customer as it travels through workflows: every personal field already sealed under
 * the customer's data key, bound to the cell it will be stored in (base64, plain JSON).
 * After the customer is erased, these ciphertexts (in histories too) can never be opened.
 */
export interface SealedCustomer {
  readonly customerId: string;
  readonly region: string;
  readonly country: string;
  readonly dataKeyId: string;
  readonly fields: Readonly<Partial<Record<PersonalField, string>>> & { readonly email: string; readonly name: string };
}
