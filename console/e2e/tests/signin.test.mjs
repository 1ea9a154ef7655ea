// Signing in to the console with a password and a TOTP code.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { assertNoPageErrors, expectDescription, newPage, shop, useBrowser } from '../lib/console.mjs';
import { stepAt, totp } from '../lib/totp.mjs';

const chromium = useBrowser();

test('an admin with MFA signs in with a password, then the current TOTP code; a wrong code is refused at its field', async () => {
  const page = await newPage(chromium.browser);
  const admin = shop.admins.mfa;
  await page.goto('/admin/');
  await page.getByRole('heading', { level: 1, name: 'Sign in to Keel admin' }).waitFor();
  await page.getByLabel('Email').fill(admin.email);
  await page.getByLabel('Password').fill(shop.password);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();

  const code = page.getByLabel('Authentication code');
  await code.waitFor();
  assert.equal(await code.evaluate((input) => input === document.activeElement), true, 'the code field has the focus');
  // A code of no step the server accepts now (it allows one step of skew either way).
  const near = [-1, 0, 1].map((d) => totp(admin.totpSecret, stepAt() + d));
  const wrong = ['000000', '111111', '222222'].find((c) => !near.includes(c));
  await code.fill(wrong);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await expectDescription(code, 'The 6 digits from your authenticator app, or a recovery code. That code is wrong or expired; enter the current one.');
  assert.equal(await code.getAttribute('aria-invalid'), 'true');

  await code.fill(totp(admin.totpSecret, stepAt()));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.getByRole('banner').getByText(`${admin.email} (admin)`, { exact: true }).waitFor();
  assert.equal(await page.getByLabel('Authentication code').count(), 0);
  assertNoPageErrors(page);
});
