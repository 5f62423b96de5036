import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSION_COOKIE } from '../../src/codec/codec-server';
import { loadConfig, ownerDatabaseUrl, type Config } from '../../src/config/config';
import { createDb, dropDatabase } from '../../src/db/database';
import { createKmsClient } from '../../src/kms/kms-client';
import { freeLocalPorts } from '../../src/stack/local-servers';
import { connectClient } from '../../src/temporal/connection';
import { createDataConverter } from '../../src/temporal/data-converter';
import { spawnCli, type SpawnedCli } from '../support/spawn';
import { testStack } from '../support/stack';
import { tokenFor } from '../support/tokens';

/** Debian's Chromium (`.ci/run` installs it); playwright-core never downloads a browser. */
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** The codec's encoding, as the UI shows an undecoded payload's metadata. */
const CIPHERTEXT = /binary\/encrypted|YmluYXJ5L2VuY3J5cHRlZA/;

/** The README's operator path, in a real browser, against what `npm start` runs and prints. */
describe('the operator UI in a real browser (npm start)', () => {
  const cleanups: (() => Promise<unknown> | void)[] = [];
  const marker = `ui-marker-${randomBytes(6).toString('hex')}`;
  const workflowId = `operator-ui-${randomBytes(4).toString('hex')}`;
  let start: SpawnedCli;
  let config: Config;
  let uiUrl: string;
  let signInUrl: string;

  beforeAll(async () => {
    const stack = testStack();
    const free = await freeLocalPorts();
    const db = new URL(stack.databaseUrl);
    db.pathname = `${db.pathname}_ui_${Date.now().toString(36)}`;
    const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-ui-'));
    const env = { ...free, LEDGERLOCK_DATA_DIR: dataDir, LEDGERLOCK_TOOLS_DIR: stack.toolsDir, DATABASE_URL: db.toString() };
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }), () => dropDatabase(db.toString()));
    config = loadConfig(env);

    start = spawnCli(['start'], env);
    cleanups.push(async () => {
      start.child.kill('SIGTERM');
      await start.exited;
    });
    await start.waitFor('Ledgerlock is ready', 150_000);
    // The addresses the operator reads off the ready table.
    uiUrl = start.stdout().match(/Temporal Web UI\s+(\S+)/)![1]!;
    signInUrl = start.stdout().match(/Operator sign-in\s+(\S+)/)![1]!;
    expect(new URL(signInUrl).origin).toBe(new URL(uiUrl).origin);

    // A real workflow, its input encrypted by the production codec; no worker polls its queue, so it stays open.
    const kms = createKmsClient(config);
    cleanups.push(() => kms.destroy());
    const client = await connectClient(config, createDataConverter(config, kms));
    cleanups.push(() => client.connection.close());
    await client.workflow.start('operatorUiMarker', { taskQueue: 'operator-ui-test', workflowId, args: [{ marker }] });
  }, 200_000);

  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });

  /** A browser with a profile of its own, as an operator's first visit. */
  async function freshBrowser(): Promise<BrowserContext> {
    const profile = mkdtempSync(path.join(os.tmpdir(), 'ledgerlock-chromium-'));
    const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    cleanups.push(async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    });
    return context;
  }

  const workflowPage = () => `${uiUrl}/namespaces/${config.temporal.namespace}/workflows/${workflowId}`;

  /** The workflow's page once its input panel has rendered, with whatever the codec let it show. */
  async function openWorkflow(page: Page): Promise<string> {
    await page.goto(workflowPage());
    const input = page.getByText(/binary\/encrypted|YmluYXJ5L2VuY3J5cHRlZA|ui-marker-/).first();
    await input.waitFor({ state: 'visible', timeout: 30_000 });
    return page.locator('body').innerText();
  }

  async function signIn(page: Page, token: string): Promise<string> {
    await page.goto(signInUrl);
    await page.locator('textarea[name=token]').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    // The answer page, whichever it is: the form's own page says none of these.
    await page.getByText(/Signed in as|That token/).first().waitFor({ state: 'visible', timeout: 15_000 });
    return page.locator('body').innerText();
  }

  it('shows ciphertext before signing in, and the decoded input after, with nothing more to set', async () => {
    const context = await freshBrowser();
    const page = await context.newPage();

    const before = await openWorkflow(page);
    expect(before).toMatch(CIPHERTEXT);
    expect(before).not.toContain(marker);

    const signedIn = await signIn(page, await tokenFor(config, 'ops-ui-test', ['payload:decrypt']));
    expect(signedIn).toContain('Signed in as ops-ui-test');
    const cookie = (await context.cookies(uiUrl)).find((c) => c.name === SESSION_COOKIE);
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });

    await page.goto(workflowPage());
    await page.getByText(marker).first().waitFor({ state: 'visible', timeout: 30_000 });

    // Each decode went through the codec server's audit, as the signed-in operator.
    const owner = createDb(ownerDatabaseUrl(config), { max: 1 });
    try {
      const { rows } = await sql<{ actor: string }>`select actor from audit_log where action = 'payload.decode'`.execute(owner);
      expect(rows.length).toBeGreaterThan(0);
      expect(new Set(rows.map((r) => r.actor))).toEqual(new Set(['ops-ui-test']));
    } finally {
      await owner.destroy();
    }
  });

  it('decodes nothing for a token without the payload:decrypt scope', async () => {
    const context = await freshBrowser();
    const page = await context.newPage();
    const token = await tokenFor(config, 'ops-no-scope', ['customers:read', 'payload:encode']);

    const refused = await signIn(page, token);
    expect(refused).toContain('lacks the payload:decrypt scope');
    expect((await context.cookies(uiUrl)).map((c) => c.name)).not.toContain(SESSION_COOKIE);
    const after = await openWorkflow(page);
    expect(after).toMatch(CIPHERTEXT);
    expect(after).not.toContain(marker);

    // Even planted as a session cookie by hand, such a token decodes nothing: the codec server checks the scope.
    await context.addCookies([{ name: SESSION_COOKIE, value: token, url: uiUrl, httpOnly: true, sameSite: 'Strict' }]);
    const planted = await openWorkflow(page);
    expect(planted).toMatch(CIPHERTEXT);
    expect(planted).not.toContain(marker);
  });
});
