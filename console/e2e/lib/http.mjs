// One JSON call to Keel's API, as any client of the shop makes it.

/** `{ status, body }` of `method path` on `baseUrl`; `body` is the parsed JSON (or null). */
export async function call(baseUrl, method, path, { token, body, headers = {} } = {}) {
  const res = await fetch(baseUrl + path, {
    method,
    headers: {
      ...(body ? { 'content-type': 'application/json' } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}
