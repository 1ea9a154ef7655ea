// Passkeys in the console, with Chromium's DevTools virtual authenticator (a platform
// authenticator that keeps discoverable credentials and verifies its user): a signed-in admin
// registers one, signs out, and signs in with it on the sign-in page without email, password
// or code.
import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { assertNoPageErrors, expectText, newPage, openSection, shop, signIn, useBrowser } from '../lib/console.mjs';

const chromium = useBrowser();

/** Keel's relying party for a local run is `localhost` at its port: the browser must use that name. */
const localhost = shop.baseUrl.replace('//127.0.0.1:', '//localhost:');

test('an admin registers a passkey while signed in, then signs in with it alone', async () => {
  const page = await newPage(chromium.browser, undefined, localhost);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  const admin = shop.admins.passkeys;

  await signIn(page, admin);
  await openSection(page, 'Your passkeys');
  await page.getByRole('main').getByText('No passkeys yet.').waitFor();
  await page.getByLabel('Name').fill('E2E laptop');
  await page.getByRole('button', { name: 'Add a passkey' }).click();
  await expectText(page.getByRole('status').filter({ hasText: 'added' }), 'Passkey “E2E laptop” added: you can sign in with it.');
  const table = page.getByRole('region', { name: 'Passkeys' });
  await table.getByRole('cell', { name: 'E2E laptop', exact: true }).waitFor();
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.equal(credentials.length, 1, 'the authenticator holds one credential');
  assert.equal(credentials[0].isResidentCredential, true, 'a discoverable credential');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { level: 1, name: 'Sign in to Keel admin' }).waitFor();
  await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  await page.getByRole('banner').getByText(`${admin.email} (admin)`, { exact: true }).waitFor();
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  assert.ok(after.credentials[0].signCount >= 1, 'the authenticator counted the sign-in');

  await openSection(page, 'Your passkeys');
  const row = table.getByRole('row', { name: /E2E laptop/ });
  await row.waitFor();
  assert.notEqual(await row.getByRole('cell').nth(2).innerText(), '—', 'the passkey shows when it was last used');
  assertNoPageErrors(page);
});
