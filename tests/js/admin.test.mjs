// The admin console at /admin in headless Chromium, against a real node whose Kafka bootstrap leads
// nowhere (so events become dead letters): a refused sign-in, then tenants, config with the secret
// masked, an edit refused by field and one saved, live sessions and a kick, stats with an open hook
// breaker, dead letters and a re-push, and disabling the tenant. Screenshots go to test-artifacts/.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { ARTIFACTS, makeHooks, makeTenant, next, openBrowser, startNode } from './helpers.mjs';

let node;
let browser;
before(async () => {
  node = await startNode({
    node: { kafka_bootstrap: '127.0.0.1:1' }, // nothing listens: every Kafka event ends in the dead-letter spool
    env: { MICS_KAFKA_MESSAGE_TIMEOUT_MS: '300', MICS_KAFKA_RETRY_BACKOFF_MS: '50' },
  });
  browser = await openBrowser();
});
after(async () => {
  await browser?.close();
  await node?.stop();
});

const shot = (page, name) => page.screenshot({ path: join(ARTIFACTS, `admin-${name}.png`), fullPage: true });

async function signIn(page, secret) {
  await page.goto(`${node.http}/admin/`);
  await page.fill('#login-secret', secret);
  await page.click('#login-button');
}

/** A tenant whose check-message hook answers too slowly: two timeouts open its breaker. */
async function slowHookTenant() {
  const hooks = { ...makeHooks(), checkMessage: async () => (await sleep(300), { allow: true }) };
  const tenant = await makeTenant(node, {
    transport: 'http', hooks, config: { hook_timeout_ms: 50, hook_breaker_failure_threshold: 2 },
  });
  const alice = await tenant.user('alice', 'phone', { reconnect: false });
  const bob = await tenant.user('bob', 'laptop', { reconnect: false });
  for (const n of [1, 2, 3]) await alice.send('bob', { n }); // allowed: the hook degrades to allow
  return { tenant, alice, bob };
}

test('the page holds no secret, and a wrong admin secret is refused', async () => {
  for (const path of ['/admin/', '/admin/admin.js']) {
    const text = await (await fetch(`${node.http}${path}`)).text();
    assert.ok(text.length > 500, path);
    assert.ok(!text.includes(node.admin_secret), `${path} holds no admin secret`);
  }
  const page = await browser.context.newPage();
  await signIn(page, 'not-the-admin-secret');
  await page.waitForSelector('#login-error:has-text("sign-in refused")');
  assert.match(await page.textContent('#login-error'), /wamp\.error\.not_authorized/);
  assert.equal(await page.isVisible('#console'), false);
  assert.equal(await page.inputValue('#login-secret'), '', 'the typed secret is not kept in the form');
  await shot(page, 'login-refused');
  await page.close();
});

test('an admin manages a tenant: config, sessions, hook health, dead letters, disable', async () => {
  const { tenant, alice, bob } = await slowHookTenant();
  const page = await browser.context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  try {
    await signIn(page, node.admin_secret);
    const row = page.locator(`#tenants tr[data-tenant="${tenant.id}"]`);
    await row.waitFor();
    assert.deepEqual(await row.locator('td').allTextContents(), [tenant.id, 'yes', '2']);
    assert.match(await page.textContent('#node-id'), new RegExp(node.node_id));

    // config: the secret is masked, never shown
    await row.click();
    await page.waitForSelector('#tenant-title:has-text("' + tenant.id + '")');
    const secretInput = page.locator('#config tr[data-field="secret"] input');
    assert.equal(await secretInput.inputValue(), '');
    assert.equal(await secretInput.getAttribute('placeholder'), '*** (unchanged)');
    assert.ok(!(await page.content()).includes(tenant.secret), 'the tenant secret is not in the page');
    assert.equal(await page.inputValue('#config tr[data-field="hook_timeout_ms"] input'), '50');

    // stats and hook health: the slow check-message hook timed out twice and its breaker opened
    await page.click('.tabs button[data-tab="health"]');
    const check = page.locator('#hooks tr[data-hook="check_message"]');
    await check.waitFor();
    assert.equal(await check.getAttribute('data-breaker'), 'open');
    assert.equal(await check.locator('td[data-outcome="timeout"]').textContent(), '2');
    assert.equal(await check.locator('td[data-outcome="breaker_open"]').textContent(), '1');
    assert.equal(await page.textContent('#stats tr[data-stat="connections"] td'), '2');
    await shot(page, 'health');

    // live sessions, and a kick
    await page.click('.tabs button[data-tab="sessions"]');
    await page.waitForSelector('#sessions tr[data-user="alice"][data-device="phone"]');
    await page.waitForSelector('#sessions tr[data-user="bob"][data-device="laptop"]');
    await shot(page, 'sessions');
    const kicked = next(alice, 'close');
    await page.click('#sessions tr[data-user="alice"] button.kick');
    assert.equal((await kicked).reason, 'mics.close.kicked');
    await page.waitForSelector('#sessions tr[data-user="alice"]', { state: 'detached' });
    await sleep(1500); // the page lists the sessions again a second after the kick
    await page.waitForSelector('#sessions tr[data-user="bob"]');
    assert.equal(await page.locator('#sessions tr[data-user="alice"]').count(), 0, 'the kicked session is gone');

    // dead letters (Kafka is unreachable), then a re-push
    await page.click('.tabs button[data-tab="dlq"]');
    for (let i = 0; i < 40 && (await page.locator('#dlq tbody tr').count()) === 0; i++) {
      await sleep(250);
      await page.click('#dlq-refresh');
    }
    const types = await page.locator('#dlq tbody tr td:nth-child(3)').allTextContents();
    assert.ok(types.includes('CONNECT_ONLINE') && types.includes('SINGLE_CHAT_MSG'), types.join());
    await shot(page, 'dead-letters');
    const held = (await node.admin.call('mics.admin.dlq.list', [], { tenant_id: tenant.id })).total;
    await page.click('#repush');
    await page.waitForSelector(`#dlq-status:has-text("re-pushed ${held}")`);

    // back to the config;
    // an invalid value is refused and the error is shown beside its field; nothing changes
    await page.click('.tabs button[data-tab="config"]');
    await page.fill('#config tr[data-field="hook_timeout_ms"] input', '0');
    await page.fill('#config tr[data-field="max_message_qps"] input', '555');
    await page.click('#save');
    const fieldError = page.locator('#config tr[data-field="hook_timeout_ms"].invalid .field-error');
    await fieldError.waitFor();
    assert.equal(await fieldError.textContent(), `tenants.${tenant.id}.hook_timeout_ms: expected int 1..60000, got 0`);
    await shot(page, 'config-invalid');
    let stored = await node.admin.call('mics.admin.tenant.get', [], { tenant_id: tenant.id });
    assert.equal(stored.config.hook_timeout_ms, 50);
    assert.equal(stored.config.max_message_qps, 10000, 'a refused upsert changes nothing');

    // fixed, it saves (only the changed fields are sent)
    await page.fill('#config tr[data-field="hook_timeout_ms"] input', '60');
    await page.click('#save');
    await page.waitForSelector('#config-status:has-text("saved: hook_timeout_ms, max_message_qps")');
    stored = await node.admin.call('mics.admin.tenant.get', [], { tenant_id: tenant.id });
    assert.equal(stored.config.hook_timeout_ms, 60);
    assert.equal(stored.config.max_message_qps, 555);
    assert.equal(stored.config.hook_breaker_failure_threshold, 2, 'untouched fields keep their values');

    // disable: new joins refused, live sessions closed
    page.once('dialog', (dialog) => dialog.accept());
    const closed = next(bob, 'close');
    await page.click('#disable');
    await page.waitForSelector('#tenant-state[data-state="disabled"]');
    assert.equal((await closed).reason, 'mics.close.tenant_disabled');
    await page.waitForSelector(`#tenants tr[data-tenant="${tenant.id}"][data-enabled="no"]`);
    await assert.rejects(tenant.user('carol', 'd1', { reconnect: false }), (err) => err.uri === 'mics.error.invalid_tenant');
    await shot(page, 'disabled');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await tenant.close();
  }
});
