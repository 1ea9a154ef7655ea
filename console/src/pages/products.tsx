import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { amountText, api, formatMoney, formatTime, parseAmount, type Problem, type Schemas } from '../client';
import { call, Field, ListState, Loading, Notice, ProblemAlert, ProblemError, TableWrap, toProblem, useAction, usePaged } from '../ui';

type Product = Schemas['Product'];
type Sort = 'created_at' | '-created_at' | 'price' | '-price' | 'name';

/** A problem made here, for a value the API would refuse anyway (named like the API's field). */
export function localProblem(field: string, message: string): Problem {
  return { type: 'about:blank', title: 'Invalid value', status: 422, detail: message, code: 'validation_failed', request_id: '', errors: [{ field, code: 'invalid', message }] };
}

export function Products({ admin }: { admin: boolean }) {
  const [q, setQ] = useState('');
  const [category, setCategory] = useState('');
  const [sort, setSort] = useState<Sort>('-created_at');
  const [selected, setSelected] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const paged = usePaged(`${q}|${category}|${sort}`, (cursor) =>
    call(api.GET('/v1/products', { params: { query: { q: q || undefined, category: category || undefined, sort, cursor } }, cache: 'no-cache' })),
  );

  return (
    <>
      <h1>Products and stock</h1>
      <form class="filters" role="search" aria-label="Search products" onSubmit={(e) => e.preventDefault()}>
        <Field label="Search products" name="q" problem={paged.problem}>
          {(a) => <input {...a} type="search" value={q} onChange={(e) => setQ(e.currentTarget.value.trim())} />}
        </Field>
        <Field label="Category" name="category" problem={paged.problem}>
          {(a) => <input {...a} value={category} onChange={(e) => setCategory(e.currentTarget.value.trim())} />}
        </Field>
        <Field label="Sort by" name="sort" problem={paged.problem}>
          {(a) => (
            <select {...a} value={sort} onChange={(e) => setSort(e.currentTarget.value as Sort)}>
              <option value="-created_at">Newest first</option>
              <option value="created_at">Oldest first</option>
              <option value="name">Name</option>
              <option value="price">Price, lowest first</option>
              <option value="-price">Price, highest first</option>
            </select>
          )}
        </Field>
        {admin && (
          <button type="button" class="primary" onClick={() => (setCreating(true), setSelected(null))}>
            New product
          </button>
        )}
      </form>
      <div class="split">
        <ListState paged={paged} what="products" empty="No products match this search.">
          {(products) => (
            <TableWrap label="Products">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">SKU</th>
                  <th scope="col">Category</th>
                  <th scope="col" class="num">Price</th>
                  <th scope="col" class="num">Available</th>
                </tr>
              </thead>
              <tbody>
                {products.map((p) => (
                  <tr key={p.id} class={selected === p.id ? 'selected' : undefined}>
                    <th scope="row">
                      <button type="button" class="link" aria-label={`Open product ${p.name}`} onClick={() => (setSelected(p.id), setCreating(false))}>
                        {p.name}
                      </button>
                    </th>
                    <td>
                      <code>{p.sku}</code>
                    </td>
                    <td>{p.category}</td>
                    <td class="num">{formatMoney(p.price)}</td>
                    <td class="num">{p.stock_available}</td>
                  </tr>
                ))}
              </tbody>
            </TableWrap>
          )}
        </ListState>
        {selected && <ProductDetail key={selected} id={selected} admin={admin} onChange={paged.reload} onClose={() => setSelected(null)} />}
        {creating && admin && <NewProduct onCreated={(p) => (setCreating(false), setSelected(p.id), paged.reload())} onClose={() => setCreating(false)} />}
      </div>
    </>
  );
}

async function fetchProduct(id: string): Promise<Product> {
  return call(api.GET('/v1/products/{id}', { params: { path: { id } }, cache: 'no-cache' }));
}

function ProductDetail({ id, admin, onChange, onClose }: { id: string; admin: boolean; onChange: () => void; onClose: () => void }) {
  const [product, setProduct] = useState<Product | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState('');

  useEffect(() => {
    fetchProduct(id).then(setProduct, (e) => setProblem(toProblem(e)));
  }, [id]);

  function changed(p: Product, message: string) {
    setProduct(p);
    setDone(message);
    onChange();
  }

  return (
    <section class="panel detail" aria-labelledby="product-title">
      <header class="panel-head">
        <h2 id="product-title">{product ? product.name : 'Product'}</h2>
        <button type="button" onClick={onClose} aria-label="Close product details">
          Close
        </button>
      </header>
      <ProblemAlert problem={problem} />
      {!product && !problem && <Loading what="the product" />}
      {product && (
        <>
          <dl class="facts">
            <dt>Id</dt>
            <dd>
              <code>{product.id}</code>
            </dd>
            <dt>Price</dt>
            <dd>{formatMoney(product.price)}</dd>
            <dt>Available</dt>
            <dd>{product.stock_available}</dd>
            <dt>Active</dt>
            <dd>{product.active ? 'yes' : 'no'}</dd>
            <dt>Version</dt>
            <dd>{product.version}</dd>
            <dt>Updated</dt>
            <dd>{formatTime(product.updated_at)}</dd>
          </dl>
          {done && <Notice>{done}</Notice>}
          {admin && <ProductEditor key={product.version} product={product} onSaved={(p) => changed(p, 'Product saved.')} />}
          {admin && <StockForm product={product} onAdjusted={(p) => changed(p, 'Stock adjusted.')} />}
        </>
      )}
    </section>
  );
}

type Draft = { name: string; description: string; category: string; price: string; active: boolean };

const draftOf = (p: Product): Draft => ({ name: p.name, description: p.description, category: p.category, price: amountText(p.price), active: p.active });

/** Edits with `If-Match` of the version it started from; a 412 shows the saved product beside the edit. */
function ProductEditor({ product, onSaved }: { product: Product; onSaved: (p: Product) => void }) {
  const [base, setBase] = useState(product);
  const [draft, setDraft] = useState<Draft>(() => draftOf(product));
  const [conflict, setConflict] = useState<Product | null>(null);
  const action = useAction();
  const currency = product.price.currency;
  const set = (k: keyof Draft) => (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    setDraft({ ...draft, [k]: input.type === 'checkbox' ? input.checked : input.value });
  };

  async function save(version: number) {
    const amount = parseAmount(draft.price, currency);
    if (amount === null) return action.setProblem(localProblem('price', `Enter a price such as 12.50 (${currency}).`));
    const body = { name: draft.name, description: draft.description, category: draft.category, active: draft.active, price: { amount, currency } };
    const saved = await action.run(async () => {
      try {
        return await call(api.PATCH('/v1/admin/products/{id}', { params: { path: { id: product.id }, header: { 'If-Match': `"${version}"` } }, body }));
      } catch (e) {
        if (e instanceof ProblemError && e.problem.status === 412) setConflict(await fetchProduct(product.id));
        throw e;
      }
    });
    if (saved) {
      setConflict(null);
      onSaved(saved);
    }
  }

  return (
    <form
      class="panel-form"
      aria-label={`Edit ${product.name}`}
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        save(base.version);
      }}
    >
      <h3>Edit product</h3>
      <Field label="Name" name="name" problem={action.problem}>
        {(a) => <input {...a} required value={draft.name} onInput={set('name')} />}
      </Field>
      <Field label="Description" name="description" problem={action.problem}>
        {(a) => <textarea {...a} value={draft.description} onInput={set('description')} />}
      </Field>
      <Field label="Category" name="category" problem={action.problem}>
        {(a) => <input {...a} required value={draft.category} onInput={set('category')} />}
      </Field>
      <Field label={`Price (${currency})`} name="price" problem={action.problem}>
        {(a) => <input {...a} inputMode="decimal" required value={draft.price} onInput={set('price')} />}
      </Field>
      <label class="check">
        <input type="checkbox" name="active" checked={draft.active} onChange={set('active')} />
        Active (listed and for sale)
      </label>
      {conflict ? (
        <section class="alert" role="alert" aria-labelledby="conflict-title">
          <h3 id="conflict-title">Someone else changed this product</h3>
          <p>It is now at version {conflict.version}; you edited version {base.version}. Nothing of yours was saved.</p>
          <div class="conflict">
            <Version title="Your edit" draft={draft} other={draftOf(conflict)} />
            <Version title={`Saved version ${conflict.version}`} draft={draftOf(conflict)} other={draft} />
          </div>
          <div class="actions">
            <button type="button" class="danger" disabled={action.busy} onClick={() => (setBase(conflict), save(conflict.version))}>
              Overwrite with my edit
            </button>
            <button type="button" onClick={() => (setBase(conflict), setDraft(draftOf(conflict)), setConflict(null), action.setProblem(null))}>
              Discard my edit and load the saved version
            </button>
          </div>
        </section>
      ) : (
        <ProblemAlert problem={action.problem} fields={['name', 'description', 'category', 'price', 'active']} />
      )}
      <button type="submit" class="primary" disabled={action.busy || !!conflict}>
        Save product
      </button>
    </form>
  );
}

/** One side of a conflict; values that differ from the other side are marked. */
function Version({ title, draft, other }: { title: string; draft: Draft; other: Draft }) {
  const rows: [string, keyof Draft][] = [['Name', 'name'], ['Category', 'category'], ['Price', 'price'], ['Active', 'active'], ['Description', 'description']];
  const shown = (k: keyof Draft, d: Draft) => (k === 'active' ? (d.active ? 'yes' : 'no') : String(d[k]) || '—');
  return (
    <div>
      <h4>{title}</h4>
      <dl class="facts">
        {rows.map(([label, k]) => (
          <Fragment key={k}>
            <dt>{label}</dt>
            <dd>{draft[k] === other[k] ? shown(k, draft) : <mark>{shown(k, draft)}</mark>}</dd>
          </Fragment>
        ))}
      </dl>
    </div>
  );
}

function StockForm({ product, onAdjusted }: { product: Product; onAdjusted: (p: Product) => void }) {
  const [delta, setDelta] = useState('');
  const [reason, setReason] = useState('');
  const action = useAction();

  async function submit(e: Event) {
    e.preventDefault();
    const n = Number(delta);
    if (!Number.isInteger(n) || n === 0) return action.setProblem(localProblem('delta', 'Enter a whole number of units, such as 5 or -2.'));
    const next = await action.run(() =>
      call(api.POST('/v1/admin/products/{id}/stock-adjustments', { params: { path: { id: product.id } }, body: { delta: n, reason } })),
    );
    if (next) {
      setDelta('');
      setReason('');
      onAdjusted(next);
    }
  }

  return (
    <form class="panel-form" aria-label={`Adjust stock of ${product.name}`} onSubmit={submit} noValidate>
      <h3>Adjust stock</h3>
      <Field label="Units to add or remove" name="delta" problem={action.problem} hint="Negative removes; stock never goes below what orders hold.">
        {(a) => <input {...a} inputMode="numeric" required value={delta} onInput={(e) => setDelta(e.currentTarget.value.trim())} />}
      </Field>
      <Field label="Stock reason" name="reason" problem={action.problem}>
        {(a) => <input {...a} required value={reason} onInput={(e) => setReason(e.currentTarget.value)} />}
      </Field>
      <ProblemAlert problem={action.problem} fields={['delta', 'reason']} />
      <button type="submit" disabled={action.busy}>
        Adjust stock
      </button>
    </form>
  );
}

function NewProduct({ onCreated, onClose }: { onCreated: (p: Product) => void; onClose: () => void }) {
  const [form, setForm] = useState({ sku: '', name: '', description: '', category: '', price: '', stock: '0' });
  const [currency, setCurrency] = useState('USD');
  const action = useAction();
  const set = (k: keyof typeof form) => (e: Event) => setForm({ ...form, [k]: (e.currentTarget as HTMLInputElement).value });

  async function submit(e: Event) {
    e.preventDefault();
    const amount = parseAmount(form.price, currency);
    if (amount === null) return action.setProblem(localProblem('price', `Enter a price such as 12.50 (${currency}).`));
    const stock = Number(form.stock);
    if (!Number.isInteger(stock)) return action.setProblem(localProblem('stock', 'Enter a whole number of units.'));
    const body = { sku: form.sku, name: form.name, description: form.description, category: form.category, price: { amount, currency }, stock };
    const created = await action.run(() => call(api.POST('/v1/admin/products', { body })));
    if (created) onCreated(created);
  }

  return (
    <section class="panel detail" aria-labelledby="new-product-title">
      <header class="panel-head">
        <h2 id="new-product-title">New product</h2>
        <button type="button" onClick={onClose} aria-label="Close new product">
          Close
        </button>
      </header>
      <form aria-label="New product" onSubmit={submit} noValidate>
        <Field label="SKU" name="sku" problem={action.problem}>
          {(a) => <input {...a} required value={form.sku} onInput={set('sku')} />}
        </Field>
        <Field label="Name" name="name" problem={action.problem}>
          {(a) => <input {...a} required value={form.name} onInput={set('name')} />}
        </Field>
        <Field label="Description" name="description" problem={action.problem}>
          {(a) => <textarea {...a} value={form.description} onInput={set('description')} />}
        </Field>
        <Field label="Category" name="category" problem={action.problem} hint="Lower-case letters, digits and dashes.">
          {(a) => <input {...a} required value={form.category} onInput={set('category')} />}
        </Field>
        <Field label="Price" name="price" problem={action.problem}>
          {(a) => <input {...a} inputMode="decimal" required value={form.price} onInput={set('price')} />}
        </Field>
        <Field label="Currency" name="currency" problem={action.problem} hint="The deployment's currency.">
          {(a) => <input {...a} required maxLength={3} value={currency} onInput={(e) => setCurrency(e.currentTarget.value.toUpperCase())} />}
        </Field>
        <Field label="Initial stock" name="stock" problem={action.problem}>
          {(a) => <input {...a} inputMode="numeric" value={form.stock} onInput={set('stock')} />}
        </Field>
        <ProblemAlert problem={action.problem} fields={['sku', 'name', 'description', 'category', 'price', 'currency', 'stock']} />
        <button type="submit" class="primary" disabled={action.busy}>
          Create product
        </button>
      </form>
    </section>
  );
}
