// What every test file shares: the seeded shop (written by seed.mjs), Debian's chromium,
// signing in through the console's own form, waiting for exact texts, accessibility scans and
// screenshots.
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import AxeBuilder from '@axe-core/playwright';
import { chromium } from 'playwright-core';
import { call } from './http.mjs';
import { stepAt, totp } from './totp.mjs';

/** The shop seed.mjs made: base URL, accounts, products, orders, the dead job. */
export const shop = JSON.parse(readFileSync(process.env.E2E_FIXTURE ?? assert.fail('E2E_FIXTURE is not set (use ./run)'), 'utf8'));

/** How long one wait for the console may take before the test fails. */
const WAIT_MS = 10_000;

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** One headless chromium for the test file, closed after it. */
export function useBrowser() {
  const handle = { browser: null };
  before(async () => {
    handle.browser = await chromium.launch({ executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium', headless: true });
  });
  after(async () => {
    await handle.browser?.close();
  });
  return handle;
}

/**
 * A fresh tab (its own session storage, so its own sign-in) at `viewport`, in US English and
 * UTC so money and times read the same on every machine. Uncaught errors and CSP violations of
 * the page are collected: `assertNoPageErrors` fails on any. `baseURL` is the shop's address
 * unless given (passkeys need the shop at `localhost`, WebAuthn's domain for this machine).
 */
export async function newPage(browser, viewport = DESKTOP, baseURL = shop.baseUrl) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC', baseURL });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) page.errors.push(`CSP: ${m.text()}`);
  });
  return page;
}

export function assertNoPageErrors(page) {
  assert.deepEqual(page.errors, [], 'the page raised no errors and broke no CSP rule');
}

/** The console's sign-in form; its code step with the current TOTP code when the account has one. */
export async function signIn(page, account) {
  await page.goto('/admin/');
  await page.getByLabel('Email').fill(account.email);
  await page.getByLabel('Password').fill(shop.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  if (account.totpSecret) {
    await page.getByLabel('Authentication code').fill(totp(account.totpSecret, stepAt()));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  }
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

/** Follows the console's navigation to `name` and waits for the page's heading. */
export async function openSection(page, name, heading = name) {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name, exact: true }).click();
  await page.getByRole('heading', { level: 1, name: heading, exact: true }).waitFor();
}

const squash = (text) => text.replace(/\s+/g, ' ').trim();

/**
 * Waits until `read()` (white space squashed) is exactly `expected`, polling as an assertion
 * library's `expect` does; fails with the last value seen.
 */
async function waitForValue(what, read, expected, timeout) {
  const until = Date.now() + timeout;
  let seen = '(nothing yet)';
  for (;;) {
    try {
      seen = squash(await read(Math.min(1000, Math.max(1, until - Date.now()))));
      if (seen === expected) return;
    } catch (e) {
      seen = `(${e.message.split('\n')[0]})`;
    }
    if (Date.now() >= until) assert.equal(seen, expected, `${what} after ${timeout} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until `locator`'s visible text is exactly `expected`. */
export function expectText(locator, expected, timeout = WAIT_MS) {
  return waitForValue(`text of ${locator}`, (t) => locator.innerText({ timeout: t }), expected, timeout);
}

/** Waits until the form control `locator` holds exactly `expected`. */
export function expectValue(locator, expected, timeout = WAIT_MS) {
  return waitForValue(`value of ${locator}`, (t) => locator.inputValue({ timeout: t }), expected, timeout);
}

/** Waits until `locator`'s description (the texts its aria-describedby names) is exactly `expected`. */
export function expectDescription(locator, expected, timeout = WAIT_MS) {
  return waitForValue(
    `description of ${locator}`,
    (t) =>
      locator.evaluate(
        (el) =>
          (el.getAttribute('aria-describedby') ?? '')
            .split(/\s+/)
            .map((id) => document.getElementById(id)?.textContent ?? '')
            .join(' '),
        undefined,
        { timeout: t },
      ),
    expected,
    timeout,
  );
}

/** `promise`, or a failure naming `what` when it has not settled within `ms`. */
export async function within(promise, what, ms = WAIT_MS) {
  let timer;
  const deadline = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** The text of the definition that follows the term `term` in a `<dl>` within `scope`. */
export function definition(scope, term) {
  const exactly = new RegExp(`^${term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  return scope.locator('dt', { hasText: exactly }).locator('xpath=following-sibling::dd[1]');
}

/** An axe-core scan of the page as it is: only violations that are serious or critical. */
export async function seriousViolations(page) {
  const { violations } = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze();
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

/** A full-page screenshot, kept as docs/console/<name>.png for the README. */
export async function screenshot(page, name) {
  const dir = process.env.E2E_SCREENSHOTS;
  if (dir) await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true, animations: 'disabled' });
}

/** One JSON call to the shop's API, as a client makes it (not through the console). */
export const api = (method, path, options) => call(shop.baseUrl, method, path, options);

/** A customer's access token (customers have no MFA). */
export async function customerToken(email) {
  const res = await api('POST', '/v1/auth/login', { body: { email, password: shop.password } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.access_token;
}
