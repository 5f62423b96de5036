import { SearchAttributeType } from '@temporalio/common';
import { WORKFLOW_SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

/**
 * The custom search attributes operators filter on in the Web UI, defined once in
 * workflows/search-attributes.ts (workflow code sets them, and may import nothing from src/).
 * They are not encrypted, so only opaque ids and states go there, never personal data.
 * Their names are persisted in the cluster: treat them as public API.
 */
export const SEARCH_ATTRIBUTES = WORKFLOW_SEARCH_ATTRIBUTES;

function cliType(type: SearchAttributeType): string {
  return type === SearchAttributeType.INT ? 'Int' : 'Keyword';
}

/** `--search-attribute` values for `temporal server start-dev`. */
export function devServerSearchAttributeArgs(): string[] {
  return Object.values(SEARCH_ATTRIBUTES).flatMap((key) => ['--search-attribute', `${key.name}=${cliType(key.type)}`]);
}

/**
 * `--name K --type T` pairs for `temporal operator search-attribute create`, which
 * deploy/temporal-namespace.sh runs against a full Temporal server (docker-compose and
 * `LEDGERLOCK_TEMPORAL=server` alike).
 */
export function operatorSearchAttributeArgs(): string[] {
  return Object.values(SEARCH_ATTRIBUTES).flatMap((key) => ['--name', key.name, '--type', cliType(key.type)]);
}
