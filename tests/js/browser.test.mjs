// The web chat demo at / in headless Chromium: the signed-out first screen; then two tabs (alice, bob)
// on the node's demo tenant chat 1:1 and in a group, see receipts, presence and devices, and a reload
// catches up through sync.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';
import { ROOT, startNode } from './helpers.mjs';

// playwright-core is a dev dependency of sdk/js (installed by scripts/test-js with npm ci)
const { chromium } = createRequire(new URL('../../sdk/js/package.json', import.meta.url))('playwright-core');

const CHROMIUM = process.env.MICS_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts');
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

let node;
let context;
let profile;
before(async () => {
  node = await startNode();
  profile = mkdtempSync(join(tmpdir(), 'mics-chromium-'));
  // a persistent context is how playwright takes a fresh --user-data-dir
  context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  mkdirSync(ARTIFACTS, { recursive: true });
});
after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await node?.stop();
});

async function signIn(page, user, device) {
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  await page.goto(`${node.http}/`);
  await page.fill('#login-user', user);
  await page.fill('#login-device', device);
  await page.click('#login-button');
  await page.waitForSelector('#status[data-state="online"]');
  assert.equal(await page.textContent('#me-user'), user);
  assert.equal(await page.isVisible('#login'), false, 'the sign-in card goes once signed in');
  assert.equal(await page.isVisible('#chat'), true);
  return errors;
}

test('the first screen shows the sign-in card alone, without the chat pane', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  await page.goto(`${node.http}/`);
  await page.waitForSelector('#login-button');
  assert.equal(await page.isVisible('#login'), true);
  assert.equal(await page.isVisible('#chat'), false, 'no chat pane before sign-in');
  assert.equal(await page.isVisible('#composer'), false);
  await page.screenshot({ path: join(ARTIFACTS, 'demo-signed-out.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

const bubble = (page, text) => page.locator('#messages li', { hasText: text });

test('two tabs chat through the demo page, with receipts, groups and catch-up after a reload', async () => {
  const alice = await context.newPage();
  const bob = await context.newPage();
  const aliceErrors = await signIn(alice, 'alice', 'web-a');
  const bobErrors = await signIn(bob, 'bob', 'web-b');

  // presence: alice sees bob online, and her own device in the device list
  await alice.waitForSelector('#people li[data-user="bob"][data-online="yes"]');
  await alice.waitForSelector('#devices li[data-device="web-a"]');

  // 1:1 with a read receipt
  await alice.click('#people li[data-user="bob"]');
  await alice.fill('#text', 'hello bob');
  await alice.click('#send');
  await bubble(alice, 'hello bob').waitFor();
  await bob.waitForSelector('#people li[data-user="alice"] .badge');
  await bob.click('#people li[data-user="alice"]');
  await bubble(bob, 'hello bob').waitFor();
  await alice.waitForSelector('#messages li.mine[data-status="read"]');

  // the demo backend refuses 'forbidden': the page shows the typed error's reason
  await alice.fill('#text', 'this is forbidden');
  await alice.click('#send');
  await alice.waitForSelector('#send-error:has-text("rejected by the tenant")');

  // group chat in the team group (alice, bob, carol)
  await bob.click('#groups li[data-group="team"]');
  await bob.fill('#text', 'standup in 5');
  await bob.click('#send');
  await alice.click('#groups li[data-group="team"]');
  await bubble(alice, 'bob: standup in 5').waitFor();

  // bob leaves the page; alice writes; bob comes back and catches up through sync
  await bob.goto('about:blank');
  await alice.waitForSelector('#people li[data-user="bob"][data-online="no"]', { timeout: 15_000 });
  await alice.click('#people li[data-user="bob"]');
  await alice.fill('#text', 'while you were away');
  await alice.click('#send');
  await bubble(alice, 'while you were away').waitFor();
  await bob.goto(`${node.http}/`); // same tab: signs in again from sessionStorage
  await bob.waitForSelector('#status[data-state="online"]');
  await bob.click('#people li[data-user="alice"]');
  await bubble(bob, 'while you were away').waitFor();
  assert.equal(await bubble(bob, 'hello bob').count(), 1, 'history kept once across the reload');

  await alice.screenshot({ path: join(ARTIFACTS, 'demo-alice.png'), fullPage: true });
  await bob.screenshot({ path: join(ARTIFACTS, 'demo-bob.png'), fullPage: true });
  assert.deepEqual([...aliceErrors, ...bobErrors], []);
});
