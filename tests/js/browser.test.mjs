// The web chat demo at / in headless Chromium: the signed-out first screen; then two tabs (alice, bob)
// on the node's demo tenant chat 1:1 and in a group, see receipts, presence and devices, and a reload
// catches up through sync.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, openBrowser, startNode } from './helpers.mjs';

let node;
let browser;
let context;
before(async () => {
  node = await startNode();
  browser = await openBrowser();
  context = browser.context;
});
after(async () => {
  await browser?.close();
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
