/**
 * Least-privilege scopes of API tokens, one per kind of action. Tokens carry them in the
 * space-separated `scope` claim. These strings are part of the API: never rename one.
 */
export const SCOPES = [
  'subscriptions:read',
  'subscriptions:write',
  'refunds:write',
  'customers:read',
  'customers:write',
  'customers:erase',
  'customers:export',
  'keys:rotate',
  'payload:decrypt',
  'payload:encode',
  'audit:read',
] as const;

export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}

/** The verified caller of a request: a service identity (or an operator) and its scopes. */
export interface Principal {
  readonly subject: string;
  readonly scopes: readonly Scope[];
}
