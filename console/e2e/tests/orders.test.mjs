// The back office's orders: an admin ships and refunds; support reads but is offered no change.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { api, assertNoPageErrors, customerToken, definition, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

/** Opens `id` from the orders list; the detail panel, a region named after the order. */
async function openOrder(page, id) {
  await openSection(page, 'Orders');
  await page.getByRole('region', { name: 'Orders', exact: true }).getByRole('button', { name: `Open order ${id}` }).click();
  const detail = page.getByRole('region', { name: `Order ${id}`, exact: true });
  await detail.waitFor();
  return detail;
}

test('an admin ships a paid order, then refunds part of it with a reason', async () => {
  const page = await newPage(chromium.browser);
  const id = shop.orders.toShip;
  await signIn(page, shop.admins.orders);
  const detail = await openOrder(page, id);
  await expectText(definition(detail, 'Status'), 'paid');
  await expectText(definition(detail, 'Total'), '$90.00');
  await expectText(definition(detail, 'Refunded'), '$0.00');

  await detail.getByRole('button', { name: 'Mark shipped' }).click();
  await expectText(detail.getByRole('status'), 'Order marked shipped.');
  await expectText(definition(detail, 'Status'), 'shipped');
  await detail.getByRole('button', { name: 'Mark delivered' }).waitFor();

  const refund = detail.getByRole('form', { name: `Refund order ${id}` });
  await refund.getByLabel('Refund amount (USD)').fill('30.00');
  await refund.getByLabel('Refund reason').fill('Scuffed on arrival');
  await refund.getByRole('button', { name: 'Refund' }).click();
  await expectText(detail.getByRole('status'), 'Refund made.');
  await expectText(definition(detail, 'Status'), 'partially refunded');
  await expectText(definition(detail, 'Refunded'), '$30.00');
  const row = page.getByRole('region', { name: 'Orders', exact: true }).getByRole('row').filter({ has: page.getByRole('button', { name: `Open order ${id}` }) });
  // The row's cells after its order id: placed, status, total, refunded, payment.
  await expectText(row.getByRole('cell').nth(1), 'partially refunded');
  await expectText(row.getByRole('cell').nth(3), '$30.00');

  // What the customer sees of it, through the API.
  const mine = await api('GET', `/v1/orders/${id}`, { token: await customerToken(shop.customers.ada.email) });
  assert.equal(mine.status, 200);
  assert.equal(mine.body.status, 'partially_refunded');
  assert.deepEqual(mine.body.refunded, { amount: 3000, currency: 'USD' });
  assertNoPageErrors(page);
});

test('a support user reads an order but is offered no refund, ship or deliver', async () => {
  const page = await newPage(chromium.browser);
  const id = shop.orders.forSupport;
  await signIn(page, shop.support);
  await page.getByRole('banner').getByText(`${shop.support.email} (support)`, { exact: true }).waitFor();
  const detail = await openOrder(page, id);
  await expectText(definition(detail, 'Status'), 'paid');
  await expectText(definition(detail, 'Total'), '$18.00');
  // The order is refundable and shippable: an admin would see both here.
  assert.equal(await detail.getByRole('button', { name: 'Refund' }).count(), 0, 'no refund button');
  assert.equal(await detail.getByRole('form', { name: `Refund order ${id}` }).count(), 0, 'no refund form');
  assert.equal(await detail.getByRole('button', { name: 'Mark shipped' }).count(), 0, 'no ship button');
  assertNoPageErrors(page);
});
