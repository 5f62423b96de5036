import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_DOCS } from '../../src/config/config';
import { REPO_ROOT } from '../../src/stack/paths';
import { SERVERS } from '../../src/stack/servers';

const readme = readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
const ci = readFileSync(path.join(REPO_ROOT, '.ci', 'run'), 'utf8');
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };

describe('README', () => {
  it('documents every environment variable the config module reads, as the code describes it', () => {
    for (const [name, meaning] of Object.entries(ENV_DOCS)) expect(readme).toContain(`| \`${name}\` | ${meaning} |`);
  });

  it('gives the two commands, and CI runs the test command it gives', () => {
    expect(readme).toContain('npm start   #');
    expect(readme).toContain('npm test    #');
    expect(pkg.scripts.start).toBeDefined();
    expect(pkg.scripts.test).toContain('vitest run');
    expect(ci).toMatch(/^npm test\b/m);
  });

  it('names the pinned version of every server the setup builds', () => {
    for (const server of Object.values(SERVERS)) expect(readme).toContain(`${server.module}@${server.version}`);
  });
});
