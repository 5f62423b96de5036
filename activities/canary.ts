import type { CanaryInput, CanaryResult } from '../workflows/canary';

export function createCanaryActivities(deps: { readonly identity: string }) {
  return {
    async canaryEcho(input: CanaryInput): Promise<CanaryResult> {
      return { nonce: input.nonce, answeredBy: deps.identity };
    },
  };
}
