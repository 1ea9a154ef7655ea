// The dashboard's live feed: an order placed by a customer shows up without a reload.
import { strict as assert } from 'node:assert';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { api, assertNoPageErrors, customerToken, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

test('an order a customer places appears in the live feed of an open dashboard and in its figures, without reloading it', async () => {
  const page = await newPage(chromium.browser);
  await signIn(page, shop.admins.live);
  await openSection(page, 'Dashboard');
  const feed = page.getByRole('log', { name: 'Live events' });
  // Connected before the order is placed: its event is not missed.
  await expectText(page.getByRole('region', { name: 'Live events', exact: true }).getByRole('status'), 'Live');
  const ordersToday = page
    .getByRole('region', { name: "Today's figures", exact: true })
    .locator('.card', { has: page.getByRole('heading', { name: 'Orders today', exact: true }) })
    .locator('.figure');
  const before = Number(await ordersToday.innerText());
  // Survives only as long as this document does: a reload would drop it.
  await page.evaluate(() => (window.e2eSameDocument = true));

  const token = await customerToken(shop.customers.cyd.email);
  assert.equal((await api('PUT', `/v1/cart/items/${shop.products.tote}`, { token, body: { quantity: 3 } })).status, 200);
  const checkout = await api('POST', '/v1/checkout', {
    token,
    headers: { 'idempotency-key': randomUUID() },
    body: { payment_method: 'card', card_token: 'tok_visa' },
  });
  assert.equal(checkout.status, 201, JSON.stringify(checkout.body));
  const order = checkout.body;

  const entry = feed.getByRole('listitem').filter({ hasText: `Order ${order.id} paid` });
  await entry.waitFor();
  const at = await entry.locator('time').innerText();
  await expectText(entry, `${at} Order ${order.id} paid, $54.00`);
  // The day's figures follow the live event too.
  await expectText(ordersToday, String(before + 1));
  assert.equal(await page.evaluate(() => window.e2eSameDocument), true, 'the page was not reloaded');
  assertNoPageErrors(page);
});
