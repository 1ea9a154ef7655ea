// Dead letters: an admin retries a webhook delivery that died while its receiver was down.
import { strict as assert } from 'node:assert';
import { once } from 'node:events';
import { createServer } from 'node:http';
import { test } from 'node:test';
import { assertNoPageErrors, expectText, expectValue, newPage, openSection, shop, signIn, useBrowser, within } from '../lib/console.mjs';

const chromium = useBrowser();

/** A webhook receiver on the seeded endpoint's port: answers 204 and hands over each delivery. */
async function receiver(port) {
  const deliveries = [];
  let arrived;
  const next = new Promise((resolve) => (arrived = resolve));
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      deliveries.push({ path: req.url, signature: req.headers['keel-signature'], event: JSON.parse(body) });
      res.writeHead(204).end();
      arrived();
    });
  });
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return { deliveries, next, close: () => new Promise((resolve) => server.close(resolve)) };
}

test('an admin retries a dead webhook delivery once its receiver is back, and it is delivered', async (t) => {
  const page = await newPage(chromium.browser);
  const id = shop.deadJob;
  await signIn(page, shop.admins.jobs);
  await openSection(page, 'Jobs');
  // Dead letters are what the page shows first.
  await expectValue(page.getByLabel('State'), 'dead');
  const jobs = page.getByRole('region', { name: 'Jobs', exact: true });
  const row = jobs.getByRole('row').filter({ has: page.getByRole('rowheader', { name: id, exact: true }) });
  await row.waitFor();
  await expectText(row.getByRole('cell').filter({ hasText: /^webhook\.deliver$/ }), 'webhook.deliver');

  const hooks = await receiver(shop.webhook.port);
  t.after(hooks.close);
  await row.getByRole('button', { name: `Retry job ${id}`, exact: true }).click();
  await expectText(page.getByRole('status').filter({ hasText: 'queued again' }), `Job ${id} queued again.`);
  await within(hooks.next, 'webhook delivery at the receiver');
  assert.equal(hooks.deliveries.length, 1);
  assert.equal(hooks.deliveries[0].path, '/hooks/keel');
  assert.equal(hooks.deliveries[0].event.type, 'ping');
  assert.match(hooks.deliveries[0].signature, /^t=\d+,v1=[0-9a-f]{64}$/);
  // Gone from the dead letters the page shows.
  await row.waitFor({ state: 'detached' });
  assertNoPageErrors(page);
});
