// Every page of the console: an axe-core scan (no serious or critical violation) and a
// full-page screenshot for docs/console/, at 1280×800 and, for the dashboard, a phone's width.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { assertNoPageErrors, definition, expectText, newPage, openSection, PHONE, screenshot, seriousViolations, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

/** The sections of the navigation and the file names of their screenshots. */
const SECTIONS = [
  ['Dashboard', 'Dashboard', 'dashboard'],
  ['Orders', 'Orders', 'orders'],
  ['Users', 'Users', 'users'],
  ['Products', 'Products and stock', 'products'],
  ['Pricing rules', 'Pricing rules', 'pricing'],
  ['Jobs', 'Jobs', 'jobs'],
  ['Webhooks', 'Webhook endpoints', 'webhooks'],
  ['Audit log', 'Audit log', 'audit'],
  ['API keys', 'API keys', 'api-keys'],
  ['Your passkeys', 'Your passkeys', 'passkeys'],
];

/** What shows a page has finished loading, besides no "Loading …" status left on it. */
const READY = {
  dashboard: (page) => expectText(page.getByRole('region', { name: 'Live events', exact: true }).getByRole('status'), 'Live'),
  pricing: (page) => definition(page.getByRole('region', { name: 'Quote preview', exact: true }), 'Total').waitFor(),
  'pricing-rule': (page) => definition(page.getByRole('region', { name: 'Quote preview', exact: true }), 'Total').waitFor(),
};

async function scanAndKeep(page, name) {
  await page.getByRole('status').filter({ hasText: /^Loading/ }).first().waitFor({ state: 'hidden' });
  await READY[name.replace(/-phone$/, '')]?.(page);
  await screenshot(page, name);
  assert.deepEqual(await seriousViolations(page), [], `serious or critical accessibility violations on ${name}`);
}

let page;

test('sign-in page', async () => {
  page = await newPage(chromium.browser);
  await page.goto('/admin/');
  await page.getByRole('heading', { level: 1, name: 'Sign in to Keel admin' }).waitFor();
  await scanAndKeep(page, 'signin');
  await signIn(page, shop.admins.tour);
});

for (const [section, heading, file] of SECTIONS) {
  test(`${section} page`, async () => {
    await openSection(page, section, heading);
    await scanAndKeep(page, file);
  });
}

test('order detail panel', async () => {
  await openSection(page, 'Orders');
  await page.getByRole('button', { name: `Open order ${shop.orders.forSupport}`, exact: true }).click();
  await page.getByRole('region', { name: `Order ${shop.orders.forSupport}`, exact: true }).waitFor();
  await scanAndKeep(page, 'order');
});

test('product panel with its editor and stock form', async () => {
  await openSection(page, 'Products', 'Products and stock');
  await page.getByRole('button', { name: 'Open product Canvas tote', exact: true }).click();
  await page.getByRole('region', { name: 'Canvas tote', exact: true }).getByRole('form', { name: 'Edit Canvas tote' }).waitFor();
  await scanAndKeep(page, 'product');
});

test('pricing rule editor beside the quote preview', async () => {
  await openSection(page, 'Pricing rules');
  await page.getByRole('button', { name: 'Edit rule Germany VAT', exact: true }).click();
  await page.getByRole('form', { name: 'Edit rule Germany VAT' }).waitFor();
  await scanAndKeep(page, 'pricing-rule');
});

test('dashboard at a phone width', async () => {
  const phone = await newPage(chromium.browser, PHONE);
  await signIn(phone, shop.support);
  await openSection(phone, 'Dashboard');
  await scanAndKeep(phone, 'dashboard-phone');
  assert.equal(
    await phone.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    true,
    'nothing is wider than the phone: no sideways scrolling of the page',
  );
  assertNoPageErrors(phone);
});

test('no page raised an error or broke the CSP', () => {
  assert.ok(page, 'the tour ran');
  assertNoPageErrors(page);
});
