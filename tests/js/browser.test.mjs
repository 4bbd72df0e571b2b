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

test('two tabs see live presence and typing, reply, edit and recall, and @mention in a group', async () => {
  const erin = await context.newPage();
  const frank = await context.newPage();
  const errors = [...(await signIn(erin, 'erin', 'web-e')), ...(await signIn(frank, 'frank', 'web-f'))];
  const mine = (page, text) => page.locator('#messages li.mine', { hasText: text });

  // live presence: erin adds frank and sees his dot without polling; frank opens the chat with erin
  await erin.fill('#add-person-name', 'frank');
  await erin.press('#add-person-name', 'Enter');
  await erin.waitForSelector('#people li[data-user="frank"][data-online="yes"]');
  await frank.fill('#add-person-name', 'erin');
  await frank.press('#add-person-name', 'Enter');

  // typing indicator
  await erin.type('#text', 'hel');
  await frank.waitForSelector('#typing[data-user="erin"]:has-text("erin is typing")');
  await frank.screenshot({ path: join(ARTIFACTS, 'demo-typing-frank.png'), fullPage: true });
  await erin.fill('#text', 'hello frank');
  await erin.click('#send');
  await bubble(frank, 'hello frank').waitFor();
  await frank.waitForSelector('#typing:not([data-user="erin"])');

  // frank replies to it; erin sees the quote
  await bubble(frank, 'hello frank').hover();
  await bubble(frank, 'hello frank').locator('button.reply').click();
  await frank.waitForSelector('#composer-mode[data-mode="reply"]');
  await frank.fill('#text', 'hi erin');
  await frank.click('#send');
  await erin.locator('#messages li', { hasText: 'hi erin' }).locator('.quote', { hasText: 'erin: hello frank' }).waitFor();

  // erin edits her message; frank sees the new text, marked edited
  await mine(erin, 'hello frank').hover();
  await mine(erin, 'hello frank').locator('button.edit').click();
  await erin.waitForSelector('#composer-mode[data-mode="edit"]');
  await erin.fill('#text', 'hello, frank!');
  await erin.click('#send');
  await frank.locator('#messages li', { hasText: 'hello, frank!' }).locator('.meta', { hasText: 'edited' }).waitFor();

  // erin sends to the wrong chat and recalls it; frank's bubble says so and the text is gone
  await erin.fill('#text', 'oops wrong chat');
  await erin.click('#send');
  await bubble(frank, 'oops wrong chat').waitFor();
  await mine(erin, 'oops wrong chat').hover();
  await mine(erin, 'oops wrong chat').locator('button.recall').click();
  await frank.waitForSelector('#messages li.recalled:has-text("message recalled")');
  assert.equal(await bubble(frank, 'oops wrong chat').count(), 0);
  // erin's own tab applies the recall when its answer (or her copy's event) arrives: maybe a moment later
  await erin.waitForSelector('#messages li.recalled:has-text("message recalled")');
  assert.equal(await bubble(erin, 'oops wrong chat').count(), 0);

  // @mention in the lobby group: erin's copy is highlighted
  await frank.click('#groups li[data-group="lobby"]');
  await frank.fill('#text', '@erin look here');
  await frank.click('#send');
  await erin.click('#groups li[data-group="lobby"]');
  await erin.waitForSelector('#messages li.mentions-me:has-text("@erin look here")');

  await erin.screenshot({ path: join(ARTIFACTS, 'demo-conversation-erin.png'), fullPage: true });
  await frank.click('#people li[data-user="erin"]');
  await frank.screenshot({ path: join(ARTIFACTS, 'demo-conversation-frank.png'), fullPage: true });

  // frank leaves: erin's dot for him goes grey at once (a presence event, not a poll)
  await frank.goto('about:blank');
  await erin.waitForSelector('#people li[data-user="frank"][data-online="no"]', { timeout: 5_000 });
  assert.deepEqual(errors, []);
});

test('a tab lists the AI agents, asks the demo assistant 1:1 and with an @mention, and watches the answers stream in', async () => {
  const gina = await context.newPage();
  const hank = await context.newPage();
  const errors = [...(await signIn(gina, 'gina', 'web-g')), ...(await signIn(hank, 'hank', 'web-h'))];

  // the agents list (mics.agent.list); the assistant is no person: no presence dot, not among people
  await gina.waitForSelector('#agents li[data-agent="assistant"]:has-text("Demo assistant")');
  assert.equal(await gina.locator('#people li[data-user="assistant"]').count(), 0);

  // 1:1 with the bot: one bubble grows word by word, then is the final message
  await gina.click('#agents li[data-agent="assistant"]');
  assert.equal(await gina.getAttribute('#text', 'placeholder'), 'Ask assistant…');
  await gina.fill('#text', 'one two three four five');
  await gina.click('#send');
  const growing = gina.locator('#messages li.agent.streaming');
  await growing.waitFor();
  const early = await growing.locator('.text').textContent();
  const done = gina.locator('#messages li.agent:not(.streaming)', { hasText: '5 words' });
  await done.waitFor();
  const final = await done.locator('.text').textContent();
  assert.ok(early.length < final.length && final.startsWith('one two three four five —'), `${early} | ${final}`);
  assert.equal(await gina.locator('#messages li.agent').count(), 1, 'one bubble: the stream became the final message');
  await gina.screenshot({ path: join(ARTIFACTS, 'demo-agent-gina.png'), fullPage: true });

  // @assistant in the lobby: hank, another member, sees the answer too
  await gina.click('#groups li[data-group="lobby"]');
  await gina.fill('#text', '@assistant hello lobby');
  await gina.click('#send');
  await hank.click('#groups li[data-group="lobby"]');
  await hank.locator('#messages li.agent:not(.streaming)', { hasText: '@assistant hello lobby — 3 words' }).waitFor();
  await hank.screenshot({ path: join(ARTIFACTS, 'demo-agent-group-hank.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
