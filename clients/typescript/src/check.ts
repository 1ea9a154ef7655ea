// A typed client of Keel's API, generated from /openapi.json by openapi-typescript, used the way
// an application would: sign in, page through the catalog with `limit` and `cursor`, and price a
// product. `tsc --noEmit` proves the document yields usable types; running it against a live
// server proves the types match what the server does. It exits non-zero on any surprise.
//
//   KEEL_URL=http://127.0.0.1:8080 KEEL_EMAIL=… KEEL_PASSWORD=… node dist/check.js

import createClient from "openapi-fetch";
import type { components, paths } from "./api.js";

type Product = components["schemas"]["Product"];
type Problem = components["schemas"]["Problem"];

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`set ${name}`);
  return value;
}

function fail(what: string, problem?: Problem): never {
  const detail = problem ? `: ${problem.status} ${problem.code}: ${problem.detail}` : "";
  throw new Error(`${what}${detail}`);
}

const keel = createClient<paths>({ baseUrl: env("KEEL_URL") });

// Sign in; every later request sends the access token.
const login = await keel.POST("/v1/auth/login", {
  body: { email: env("KEEL_EMAIL"), password: env("KEEL_PASSWORD") },
});
if (!login.data) fail("login", login.error);
const session = login.data;
if (session.token_type !== "Bearer") fail(`unexpected token type ${session.token_type}`);
keel.use({
  onRequest({ request }) {
    request.headers.set("Authorization", `Bearer ${session.access_token}`);
    return request;
  },
});
console.log(`signed in as ${session.user.email} (${session.user.roles.join(", ")})`);

// Page through every active product, cheapest first.
const limit = 40;
const seen: Product[] = [];
let cursor: string | undefined;
let pages = 0;
do {
  const query: paths["/v1/products"]["get"]["parameters"]["query"] = { limit, sort: "price" };
  if (cursor !== undefined) query.cursor = cursor;
  const page = await keel.GET("/v1/products", { params: { query } });
  if (!page.data) fail(`products page ${pages + 1}`, page.error);
  pages += 1;
  if (page.data.data.length > limit) fail(`page ${pages} has ${page.data.data.length} products, over the limit of ${limit}`);
  seen.push(...page.data.data);
  cursor = page.data.next_cursor ?? undefined;
} while (cursor !== undefined);

const ids = new Set(seen.map((p) => p.id));
if (ids.size !== seen.length) fail(`paging returned ${seen.length - ids.size} products twice`);
for (let i = 1; i < seen.length; i++) {
  if (seen[i - 1]!.price.amount > seen[i]!.price.amount) fail(`products out of price order at ${i}`);
}
if (pages < 2) fail(`expected more than one page of ${limit}, got ${pages} (${seen.length} products)`);
console.log(`paged through ${seen.length} products in ${pages} pages of up to ${limit}`);

// Price three of the cheapest product.
const product = seen[0] ?? fail("no products to quote");
const quote = await keel.GET("/v1/products/{id}/quote", {
  params: { path: { id: product.id }, query: { quantity: 3 } },
});
if (!quote.data) fail("quote", quote.error);
const q = quote.data;
const adjusted = q.subtotal.amount + q.adjustments.reduce((sum, a) => sum + a.amount.amount, 0);
if (q.product_id !== product.id || q.quantity !== 3) fail("the quote is for another product or quantity");
if (q.subtotal.amount !== 3 * q.unit_price.amount) fail("subtotal is not quantity × unit price");
if (adjusted !== q.total.amount) fail(`subtotal plus adjustments (${adjusted}) is not the total (${q.total.amount})`);
const money = (m: components["schemas"]["Money"]) => `${(m.amount / 100).toFixed(2)} ${m.currency}`;
console.log(`quote: 3 × ${product.name} = ${money(q.total)} (${q.adjustments.length} adjustments, rules v${q.rules_version})`);

// A refusal is a typed problem document.
const missing = await keel.GET("/v1/products/{id}", { params: { path: { id: "prd_does_not_exist" } } });
if (missing.response.status !== 404 || missing.error?.code !== "not_found") fail("an unknown product is not a 404 not_found");
console.log("an unknown product answers 404 not_found as application/problem+json");
