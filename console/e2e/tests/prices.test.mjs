// A price change in the back office reaches the catalog and the quotes.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { api, assertNoPageErrors, definition, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

/** The pricing page's live quote for 2 Harbour mugs shipped to Germany (the seeded rule adds 19 %). */
async function quoteForTwoMugsToGermany(page) {
  await openSection(page, 'Pricing rules');
  const preview = page.getByRole('region', { name: 'Quote preview', exact: true });
  const form = preview.getByRole('form', { name: 'Quote preview' });
  await form.getByLabel('Product').selectOption(shop.products.mug);
  await form.getByLabel('Country').fill('DE');
  await form.getByLabel('Quantity').fill('2');
  return preview;
}

test('an admin changes a price: the catalog and a quote for it change', async () => {
  const page = await newPage(chromium.browser);
  await signIn(page, shop.admins.prices);

  let preview = await quoteForTwoMugsToGermany(page);
  await expectText(preview.getByLabel('Product').locator('option:checked'), 'Harbour mug ($12.50)');
  await expectText(definition(preview, 'Subtotal'), '$25.00');
  await expectText(definition(preview, 'Germany VAT: +19.00%'), '$4.75');
  await expectText(definition(preview, 'Total'), '$29.75');

  await openSection(page, 'Products', 'Products and stock');
  const products = page.getByRole('region', { name: 'Products', exact: true });
  await products.getByRole('button', { name: 'Open product Harbour mug', exact: true }).click();
  const detail = page.getByRole('region', { name: 'Harbour mug', exact: true });
  await expectText(definition(detail, 'Price'), '$12.50');
  const editor = detail.getByRole('form', { name: 'Edit Harbour mug' });
  await editor.getByLabel('Price (USD)').fill('14.00');
  await editor.getByRole('button', { name: 'Save product' }).click();
  await expectText(detail.getByRole('status'), 'Product saved.');
  await expectText(definition(detail, 'Price'), '$14.00');
  const row = products.getByRole('row').filter({ has: page.getByRole('button', { name: 'Open product Harbour mug', exact: true }) });
  await row.getByRole('cell', { name: '$14.00', exact: true }).waitFor();

  // The public catalog, as a storefront reads it.
  const product = await api('GET', `/v1/products/${shop.products.mug}`);
  assert.deepEqual(product.body.price, { amount: 1400, currency: 'USD' });

  preview = await quoteForTwoMugsToGermany(page);
  await expectText(preview.getByLabel('Product').locator('option:checked'), 'Harbour mug ($14.00)');
  await expectText(definition(preview, 'Subtotal'), '$28.00');
  await expectText(definition(preview, 'Germany VAT: +19.00%'), '$5.32');
  await expectText(definition(preview, 'Total'), '$33.32');
  assertNoPageErrors(page);
});
