// API keys: an admin makes a key for a server in the console, the server uses it within its
// scope, and once the admin revokes it in the console the server is refused.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { api, assertNoPageErrors, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

test('an admin makes a scoped key, a server uses it, and revoking it in the console refuses it at once', async () => {
  const page = await newPage(chromium.browser);
  await signIn(page, shop.admins.keys);
  await openSection(page, 'API keys');

  const form = page.getByRole('form', { name: 'New API key', exact: true });
  await form.getByLabel('Name').fill('Stock sync');
  await form.getByRole('checkbox', { name: 'products:read', exact: true }).check();
  await form.getByRole('button', { name: 'Create key', exact: true }).click();
  const secret = page.getByLabel('API key', { exact: true });
  await secret.waitFor();
  const key = (await secret.textContent()).trim();
  assert.match(key, /^keel_sk_live_[0-9A-Za-z]{38}$/);

  assert.equal((await api('GET', '/v1/products', { token: key })).status, 200);
  const outside = await api('GET', '/v1/admin/orders', { token: key });
  assert.deepEqual([outside.status, outside.body.code], [403, 'forbidden']);

  // Shown once: after it is put away, the list shows its beginning only.
  await page.getByRole('button', { name: 'I have stored the key', exact: true }).click();
  await secret.waitFor({ state: 'detached' });
  const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'Stock sync', exact: true }) });
  await expectText(row.getByRole('cell').filter({ hasText: /^products:read$/ }), 'products:read');
  assert.equal(await page.getByText(key).count(), 0, 'the key is not on the page any more');

  await row.getByRole('button', { name: 'Revoke Stock sync', exact: true }).click();
  const revoked = page.getByRole('status').filter({ hasText: 'revoked' });
  await revoked.waitFor();
  assert.match(await revoked.innerText(), /^Key “Stock sync” \(keel_sk_live_\w{6}…\) revoked/);
  const refused = await api('GET', '/v1/products', { token: key });
  assert.deepEqual([refused.status, refused.body.code], [401, 'invalid_token']);
  assertNoPageErrors(page);
});
