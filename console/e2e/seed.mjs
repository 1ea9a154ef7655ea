// Seeds a fresh `keel serve` with what the console tests need, through the command line (staff)
// and the HTTP API (everything else), and writes what it made to $E2E_FIXTURE as JSON.
//
// Each test file signs in as an admin of its own, every one with TOTP on, so no two sign-ins
// compete for a TOTP time step (the server takes each step once per account).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { call } from './lib/http.mjs';
import { stepAt, totp } from './lib/totp.mjs';

const baseUrl = process.env.E2E_BASE_URL ?? assert.fail('E2E_BASE_URL is not set');
const keel = process.env.KEEL_BIN ?? assert.fail('KEEL_BIN is not set');
const out = process.env.E2E_FIXTURE ?? assert.fail('E2E_FIXTURE is not set');
const password = 'correct horse battery staple';
const usd = (amount) => ({ amount, currency: 'USD' });

/** The body of a call that must answer `status`. */
async function expect(status, method, path, options) {
  const res = await call(baseUrl, method, path, options);
  assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Polls `probe` until it returns something, for at most `seconds`. */
async function eventually(what, seconds, probe) {
  const until = Date.now() + seconds * 1000;
  for (;;) {
    const found = await probe().catch(() => undefined);
    if (found) return found;
    if (Date.now() > until) throw new Error(`gave up waiting for ${what} after ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const signIn = async (email) => (await expect(200, 'POST', '/v1/auth/login', { body: { email, password } })).access_token;

/** `keel admin create` (the only way to make staff), then a session for them. */
async function staff(email, role) {
  const made = spawnSync(keel, ['admin', 'create', '--email', email, '--password-stdin', '--role', role], {
    input: `${password}\n`,
    encoding: 'utf8',
  });
  assert.equal(made.status, 0, `keel admin create ${email}: ${made.stderr}`);
  return signIn(email);
}

/** An admin with TOTP on, enabled through the MFA routes. */
async function adminWithTotp(email) {
  const token = await staff(email, 'admin');
  const { secret } = await expect(200, 'POST', '/v1/auth/mfa/totp/setup', { token });
  // The previous step's code (the server allows a step of skew): the current step stays
  // unused, so the test's sign-in with the current code is accepted however soon it comes.
  // Refused only when a step boundary passed in between: then once more, in the new step.
  for (let tries = 1; ; tries++) {
    const res = await call(baseUrl, 'POST', '/v1/auth/mfa/totp/enable', { token, body: { code: totp(secret, stepAt() - 1) } });
    if (res.status === 200) break;
    assert.ok(res.status === 422 && tries < 2, `enabling TOTP for ${email}: ${JSON.stringify(res.body)}`);
  }
  return { email, totpSecret: secret, token };
}

async function customer(email, name) {
  const { access_token, user } = await expect(201, 'POST', '/v1/auth/register', { body: { email, password, name } });
  return { email, name, id: user.id, token: access_token };
}

/** A card checkout of `items` ([productId, quantity]) with the sandbox's always-good card. */
async function paidOrder(who, items) {
  for (const [productId, quantity] of items) {
    await expect(200, 'PUT', `/v1/cart/items/${productId}`, { token: who.token, body: { quantity } });
  }
  const order = await expect(201, 'POST', '/v1/checkout', {
    token: who.token,
    headers: { 'idempotency-key': randomUUID() },
    body: { payment_method: 'card', card_token: 'tok_visa' },
  });
  assert.equal(order.status, 'paid');
  return order.id;
}

/** A loopback port nothing listens on now (the retry test listens on it later). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

await eventually('/readyz', 60, async () => (await call(baseUrl, 'GET', '/readyz')).status === 200);

const admins = {};
for (const name of ['mfa', 'prices', 'orders', 'jobs', 'live', 'keys', 'tour', 'passkeys']) {
  admins[name] = await adminWithTotp(`${name}@keel-e2e.example.com`);
}
const support = { email: 'help@keel-e2e.example.com' };
await staff(support.email, 'support');
const root = admins.tour.token;

const product = async (sku, name, category, price, stock) =>
  (await expect(201, 'POST', '/v1/admin/products', {
    token: root,
    body: { sku, name, description: `${name}, for the console tests.`, category, price: usd(price), stock },
  })).id;
const products = {
  mug: await product('MUG-E2E', 'Harbour mug', 'kitchen', 1250, 50),
  shoes: await product('SHOE-E2E', 'Deck shoes', 'apparel', 4500, 20),
  tote: await product('TOTE-E2E', 'Canvas tote', 'bags', 1800, 100),
};
const rule = await expect(201, 'POST', '/v1/admin/pricing/rules', {
  token: root,
  body: { name: 'Germany VAT', kind: 'country', priority: 1, conditions: { countries: ['DE'] }, effect: { percent_bps: 1900 } },
});

const ada = await customer('ada@keel-e2e.example.com', 'Ada Lovelace');
const ben = await customer('ben@keel-e2e.example.com', 'Ben Okri');
const cyd = await customer('cyd@keel-e2e.example.com', 'Cyd Charisse');
const orders = {
  // Shipped and refunded by the orders test.
  toShip: await paidOrder(ada, [[products.shoes, 2]]),
  // Looked at by the support user.
  forSupport: await paidOrder(ben, [[products.tote, 1]]),
};

// A webhook delivery that can never succeed (nothing listens on its port, one attempt allowed
// by KEEL_WEBHOOK_MAX_ATTEMPTS=1): a dead job. The retry test listens there, then retries it.
const hookPort = await freePort();
const endpoint = await expect(201, 'POST', '/v1/admin/webhook-endpoints', {
  token: root,
  body: { url: `http://127.0.0.1:${hookPort}/hooks/keel`, events: ['ping'] },
});
await expect(202, 'POST', `/v1/admin/webhook-endpoints/${endpoint.id}/ping`, { token: root });
const deadJob = await eventually('a dead webhook delivery', 60, async () => {
  const page = await expect(200, 'GET', '/v1/admin/jobs?state=dead&kind=webhook.deliver', { token: root });
  return page.data[0]?.id;
});

const account = ({ email, totpSecret }) => ({ email, totpSecret });
writeFileSync(
  out,
  JSON.stringify(
    {
      baseUrl,
      password,
      admins: Object.fromEntries(Object.entries(admins).map(([k, v]) => [k, account(v)])),
      support,
      customers: { ada: account(ada), ben: account(ben), cyd: account(cyd) },
      products,
      rule: rule.id,
      orders,
      webhook: { endpoint: endpoint.id, port: hookPort },
      deadJob,
    },
    null,
    2,
  ),
);
console.log(`seeded: ${Object.keys(admins).length} admins with TOTP, 1 support user, 3 products, 1 pricing rule, 2 paid orders, 1 dead job`);
