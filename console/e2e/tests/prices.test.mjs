// A price change in the back office reaches the catalog and the quotes.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { api, assertNoPageErrors, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

/** The pricing page's live quote for 2 Harbour mugs shipped to Germany (the seeded rule adds 19 %). */
async function quoteForTwoMugsToGermany(page) {
  await openSection(page, 'Pricing');
  const preview = page.getByRole('form', { name: 'Quote preview' });
  await preview.getByLabel('Product').selectOption({ label: 'Harbour mug' });
  await preview.getByLabel('Country').fill('DE');
  await preview.getByLabel('Quantity').fill('2');
  return preview;
}

test('an admin changes a price: the catalog and a quote for it change', async () => {
  const page = await newPage(chromium.browser);
  await signIn(page, shop.admins.prices);

  let preview = await quoteForTwoMugsToGermany(page);
  await expectText(preview.getByRole('status'), 'Subtotal $25.00 Germany VAT $4.75 Total $29.75');

  await openSection(page, 'Products');
  const products = page.getByRole('region', { name: 'Products', exact: true });
  const row = products.getByRole('row').filter({ hasText: 'Harbour mug' });
  await row.getByRole('button', { name: 'Edit Harbour mug', exact: true }).click();
  const editor = page.getByRole('form', { name: 'Edit Harbour mug' });
  await editor.getByLabel('Price (USD)').fill('14.00');
  await editor.getByRole('button', { name: 'Save' }).click();
  await expectText(page.getByRole('status').filter({ hasText: 'saved' }), 'Harbour mug saved.');
  await expectText(row.getByRole('cell').filter({ hasText: /^\$\d/ }).first(), '$14.00');

  // The public catalog, as a storefront reads it.
  const product = await api('GET', `/v1/products/${shop.products.mug}`);
  assert.deepEqual(product.body.price, { amount: 1400, currency: 'USD' });

  preview = await quoteForTwoMugsToGermany(page);
  await expectText(preview.getByRole('status'), 'Subtotal $28.00 Germany VAT $5.32 Total $33.32');
  assertNoPageErrors(page);
});
