import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lintWorkflows, lintWorkflowSource } from '../../scripts/lint-workflows';
import { REPO_ROOT } from '../../src/stack/paths';

const file = path.join(REPO_ROOT, 'workflows', 'example.ts');
const lint = (text: string) => lintWorkflowSource(file, text, REPO_ROOT).map((v) => `${v.line}: ${v.message}`);

describe('the workflows/ sandbox lint rule', () => {
  it('holds for the workflows in the repository', () => {
    expect(lintWorkflows(REPO_ROOT)).toEqual([]);
  });

  it('allows the workflow SDK, other workflow files, domain code and type-only imports', () => {
    expect(
      lint(`import { proxyActivities, sleep } from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import { other } from './other';
import { money } from '../domain/money';
import type * as activities from '../activities';
import type { Config } from '../src/config/config';
import { type Logger } from '../src/log';
export async function wf(input: { process: string }) { const process = input.process; return process; }`),
    ).toEqual([]);
  });

  it('rejects runtime imports of Node builtins, I/O libraries, activities and src/', () => {
    expect(
      lint(`import fs from 'node:fs';
import Stripe from 'stripe';
import { createActivities } from '../activities';
import { loadConfig } from '../src/config/config';
import '../src/side-effect';`),
    ).toEqual([
      '1: "node:fs" may only be imported with `import type` in workflow code',
      '2: "stripe" may only be imported with `import type` in workflow code',
      '3: "../activities" is outside workflows/ and domain/: use `import type` or move the pure code',
      '4: "../src/config/config" is outside workflows/ and domain/: use `import type` or move the pure code',
      '5: "../src/side-effect" is outside workflows/ and domain/: use `import type` or move the pure code',
    ]);
  });

  it('rejects process, require, fetch and dynamic import', () => {
    expect(
      lint(`export async function wf() {
  const key = process.env.SECRET;
  const x = require('x');
  await fetch('http://example.invalid');
  await import('./late');
}`),
    ).toEqual([
      '2: `process` is not available in the workflow sandbox; pass what you need in the workflow input',
      '3: `require` is not available in the workflow sandbox; pass what you need in the workflow input',
      '4: `fetch` is not available in the workflow sandbox; pass what you need in the workflow input',
      '5: dynamic import() is not allowed in workflow code',
    ]);
  });
});
