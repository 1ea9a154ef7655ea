import { Fragment } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { amountText, api, formatMoney, formatTime, parseAmount, type Problem, type Schemas } from '../client';
import { call, Field, ListState, Notice, ProblemAlert, TableWrap, toProblem, useAction, usePaged } from '../ui';
import { localProblem } from './products';

type Rule = Schemas['Rule'];
type Kind = Schemas['RuleKind'];
const KINDS: Kind[] = ['country', 'quantity_tier', 'demand', 'promotion'];

export function Pricing({ admin }: { admin: boolean }) {
  const [editing, setEditing] = useState<Rule | 'new' | null>(null);
  const [rulesChanged, setRulesChanged] = useState(0);
  const paged = usePaged('rules', (cursor) => call(api.GET('/v1/admin/pricing/rules', { params: { query: { cursor } } })));

  function changed() {
    setEditing(null);
    paged.reload();
    setRulesChanged((n) => n + 1);
  }

  return (
    <>
      <h1>Pricing rules</h1>
      {admin && (
        <div class="actions">
          <button type="button" class="primary" onClick={() => setEditing('new')}>
            New rule
          </button>
        </div>
      )}
      <div class="two">
        <div>
          <ListState paged={paged} what="pricing rules" empty="No pricing rules: every product sells at its price.">
            {(rules) => (
              <TableWrap label="Pricing rules">
                <thead>
                  <tr>
                    <th scope="col">Name</th>
                    <th scope="col">Kind</th>
                    <th scope="col" class="num">Priority</th>
                    <th scope="col">Effect</th>
                    <th scope="col">Active</th>
                    <th scope="col">Window</th>
                  </tr>
                </thead>
                <tbody>
                  {rules.map((r) => (
                    <tr key={r.id} class={editing !== 'new' && editing?.id === r.id ? 'selected' : undefined}>
                      <th scope="row">
                        {admin ? (
                          <button type="button" class="link" aria-label={`Edit rule ${r.name}`} onClick={() => setEditing(r)}>
                            {r.name}
                          </button>
                        ) : (
                          r.name
                        )}
                      </th>
                      <td>{r.kind.replace('_', ' ')}</td>
                      <td class="num">{r.priority}</td>
                      <td>{effectText(r.effect)}</td>
                      <td>{r.active ? 'yes' : 'no'}</td>
                      <td>
                        {r.starts_at || r.ends_at ? `${formatTime(r.starts_at)} – ${formatTime(r.ends_at)}` : 'always'}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </TableWrap>
            )}
          </ListState>
          {admin && editing && (
            <RuleEditor key={editing === 'new' ? 'new' : editing.id} rule={editing === 'new' ? null : editing} onDone={changed} onClose={() => setEditing(null)} />
          )}
        </div>
        <QuotePreview rulesChanged={rulesChanged} />
      </div>
    </>
  );
}

function effectText(e: Schemas['Effect']): string {
  if (e.percent_bps != null) return `${e.percent_bps > 0 ? '+' : ''}${e.percent_bps / 100}%`;
  if (e.amount_off) return `${formatMoney(e.amount_off)} off each`;
  return '—';
}

const list = (text: string) => text.split(',').map((s) => s.trim()).filter(Boolean);
/** An RFC 3339 instant as a `datetime-local` value (local time), and back. */
const localInput = (iso: string | null | undefined) => {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
};
const instant = (local: string) => (local ? new Date(local).toISOString() : null);

type Draft = {
  name: string;
  kind: Kind;
  priority: string;
  active: boolean;
  starts_at: string;
  ends_at: string;
  countries: string;
  product_ids: string;
  categories: string;
  min_quantity: string;
  coupon_code: string;
  demand_window_hours: string;
  demand_cap_bps: string;
  effect: 'percent' | 'amount';
  percent: string;
  amount: string;
  currency: string;
};

function draftOf(r: Rule | null): Draft {
  const c = r?.conditions ?? {};
  return {
    name: r?.name ?? '',
    kind: r?.kind ?? 'promotion',
    priority: String(r?.priority ?? 100),
    active: r?.active ?? true,
    starts_at: localInput(r?.starts_at),
    ends_at: localInput(r?.ends_at),
    countries: (c.countries ?? []).join(', '),
    product_ids: (c.product_ids ?? []).join(', '),
    categories: (c.categories ?? []).join(', '),
    min_quantity: c.min_quantity != null ? String(c.min_quantity) : '',
    coupon_code: c.coupon_code ?? '',
    demand_window_hours: c.demand_window_hours != null ? String(c.demand_window_hours) : '',
    demand_cap_bps: c.demand_cap_bps != null ? String(c.demand_cap_bps) : '',
    effect: r?.effect.amount_off ? 'amount' : 'percent',
    percent: r?.effect.percent_bps != null ? String(r.effect.percent_bps / 100) : '-10',
    amount: r?.effect.amount_off ? amountText(r.effect.amount_off) : '',
    currency: r?.effect.amount_off?.currency ?? 'USD',
  };
}

/** The rule the draft describes, or the problem with the field it names. */
function specOf(d: Draft): Schemas['RuleSpec'] | Problem {
  const int = (text: string) => (text.trim() === '' ? null : Number(text));
  const priority = Number(d.priority);
  if (!Number.isInteger(priority)) return localProblem('priority', 'Enter a whole number.');
  let effect: Schemas['Effect'];
  if (d.effect === 'percent') {
    const percent = Number(d.percent);
    if (!Number.isFinite(percent) || d.percent.trim() === '') return localProblem('effect', 'Enter a percentage such as -10 (a discount) or 5 (a surcharge).');
    effect = { percent_bps: Math.round(percent * 100) };
  } else {
    const amount = parseAmount(d.amount, d.currency);
    if (amount === null) return localProblem('effect', `Enter an amount such as 2.50 (${d.currency}).`);
    effect = { amount_off: { amount, currency: d.currency } };
  }
  const conditions: Schemas['Conditions'] = {};
  if (list(d.countries).length) conditions.countries = list(d.countries).map((c) => c.toUpperCase());
  if (list(d.product_ids).length) conditions.product_ids = list(d.product_ids);
  if (list(d.categories).length) conditions.categories = list(d.categories);
  if (int(d.min_quantity) != null) conditions.min_quantity = int(d.min_quantity);
  if (d.coupon_code.trim()) conditions.coupon_code = d.coupon_code.trim();
  if (int(d.demand_window_hours) != null) conditions.demand_window_hours = int(d.demand_window_hours);
  if (int(d.demand_cap_bps) != null) conditions.demand_cap_bps = int(d.demand_cap_bps);
  return { name: d.name, kind: d.kind, priority, active: d.active, starts_at: instant(d.starts_at), ends_at: instant(d.ends_at), conditions, effect };
}

function RuleEditor({ rule, onDone, onClose }: { rule: Rule | null; onDone: () => void; onClose: () => void }) {
  const [d, setD] = useState<Draft>(() => draftOf(rule));
  const action = useAction();
  const [confirmDelete, setConfirmDelete] = useState(false);
  const set = (k: keyof Draft) => (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    setD({ ...d, [k]: input.type === 'checkbox' ? input.checked : input.value });
  };
  const p = action.problem;
  const text = (k: keyof Draft, label: string, name: string, hint?: string) => (
    <Field label={label} name={name} problem={p} hint={hint}>
      {(a) => <input {...a} value={d[k] as string} onInput={set(k)} />}
    </Field>
  );

  async function submit(e: Event) {
    e.preventDefault();
    const spec = specOf(d);
    if ('code' in spec) return action.setProblem(spec);
    const ok = await action.run(() =>
      rule
        ? call(api.PATCH('/v1/admin/pricing/rules/{id}', { params: { path: { id: rule.id } }, body: spec }))
        : call(api.POST('/v1/admin/pricing/rules', { body: spec })),
    );
    if (ok) onDone();
  }

  async function remove() {
    if (!rule) return;
    const ok = await action.run(() => call(api.DELETE('/v1/admin/pricing/rules/{id}', { params: { path: { id: rule.id } } })).then(() => true));
    if (ok) onDone();
  }

  const title = rule ? `Edit rule ${rule.name}` : 'New pricing rule';
  return (
    <section class="panel" aria-label={title}>
      <header class="panel-head">
        <h2>{title}</h2>
        <button type="button" onClick={onClose} aria-label="Close rule editor">
          Close
        </button>
      </header>
      <form aria-label={title} onSubmit={submit} noValidate>
        {text('name', 'Rule name', 'name')}
        <Field label="Kind" name="kind" problem={p}>
          {(a) => (
            <select {...a} value={d.kind} onChange={set('kind')}>
              {KINDS.map((k) => (
                <option key={k} value={k}>
                  {k.replace('_', ' ')}
                </option>
              ))}
            </select>
          )}
        </Field>
        {text('priority', 'Priority', 'priority', 'Lower numbers apply first.')}
        <label class="check">
          <input type="checkbox" name="active" checked={d.active} onChange={set('active')} />
          Active
        </label>
        <Field label="Starts at" name="starts_at" problem={p}>
          {(a) => <input {...a} type="datetime-local" value={d.starts_at} onInput={set('starts_at')} />}
        </Field>
        <Field label="Ends at" name="ends_at" problem={p}>
          {(a) => <input {...a} type="datetime-local" value={d.ends_at} onInput={set('ends_at')} />}
        </Field>
        <fieldset>
          <legend>Conditions</legend>
          {text('countries', 'Countries', 'conditions.countries', 'Comma-separated codes, e.g. DE, FR.')}
          {text('product_ids', 'Product ids', 'conditions.product_ids', 'Comma-separated prd_… ids.')}
          {text('categories', 'Categories', 'conditions.categories', 'Comma-separated.')}
          {text('min_quantity', 'Minimum quantity', 'conditions.min_quantity')}
          {text('coupon_code', 'Coupon code', 'conditions.coupon_code')}
          {d.kind === 'demand' && text('demand_window_hours', 'Demand window (hours)', 'conditions.demand_window_hours')}
          {d.kind === 'demand' && text('demand_cap_bps', 'Demand cap (basis points)', 'conditions.demand_cap_bps')}
        </fieldset>
        <fieldset>
          <legend>Effect</legend>
          <Field label="Effect type" name="effect_type" problem={null}>
            {(a) => (
              <select {...a} value={d.effect} onChange={set('effect')}>
                <option value="percent">Percentage of the running total</option>
                <option value="amount">Amount off each unit</option>
              </select>
            )}
          </Field>
          {d.effect === 'percent'
            ? text('percent', 'Percent (negative is a discount)', 'effect')
            : text('amount', `Amount off each unit (${d.currency})`, 'effect')}
        </fieldset>
        <ProblemAlert
          problem={p}
          fields={['name', 'kind', 'priority', 'active', 'starts_at', 'ends_at', 'conditions.countries', 'conditions.product_ids', 'conditions.categories',
            'conditions.min_quantity', 'conditions.coupon_code', 'conditions.demand_window_hours', 'conditions.demand_cap_bps', 'effect']}
        />
        <div class="actions">
          <button type="submit" class="primary" disabled={action.busy}>
            {rule ? 'Save rule' : 'Create rule'}
          </button>
          {rule &&
            (confirmDelete ? (
              <button type="button" class="danger" disabled={action.busy} onClick={remove}>
                Confirm delete rule
              </button>
            ) : (
              <button type="button" onClick={() => setConfirmDelete(true)}>
                Delete rule
              </button>
            ))}
        </div>
      </form>
    </section>
  );
}

/** A quote for the chosen product, country, quantity and coupon, fetched as they change and
 *  again after a rule change (which reaches every instance within 2 s). */
function QuotePreview({ rulesChanged }: { rulesChanged: number }) {
  const [products, setProducts] = useState<Schemas['Product'][]>([]);
  const [productId, setProductId] = useState('');
  const [country, setCountry] = useState('');
  const [quantity, setQuantity] = useState('1');
  const [coupon, setCoupon] = useState('');
  const [quote, setQuote] = useState<Schemas['Quote'] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const latest = useRef(0);

  useEffect(() => {
    call(api.GET('/v1/products', { params: { query: { limit: 100, sort: 'name' } }, cache: 'no-cache' })).then(
      (page) => {
        setProducts(page.data);
        setProductId((id) => id || page.data[0]?.id || '');
      },
      (e) => setProblem(toProblem(e)),
    );
  }, []);

  async function fetchQuote() {
    if (!productId) return;
    const ticket = ++latest.current;
    try {
      const q = await call(
        api.GET('/v1/products/{id}/quote', {
          params: {
            path: { id: productId },
            query: { quantity: Number(quantity) || 1, country: country || undefined, coupon_code: coupon || undefined },
          },
          cache: 'no-store',
        }),
      );
      if (ticket === latest.current) (setQuote(q), setProblem(null));
    } catch (e) {
      if (ticket === latest.current) (setQuote(null), setProblem(toProblem(e)));
    }
  }

  useEffect(() => {
    const timer = window.setTimeout(fetchQuote, 250);
    return () => window.clearTimeout(timer);
  }, [productId, country, quantity, coupon]);

  useEffect(() => {
    if (!rulesChanged) return;
    const timers = [500, 2500].map((ms) => window.setTimeout(fetchQuote, ms));
    return () => timers.forEach((t) => window.clearTimeout(t));
  }, [rulesChanged]);

  return (
    <section class="panel" aria-labelledby="quote-title">
      <h2 id="quote-title">Quote preview</h2>
      <form aria-label="Quote preview" onSubmit={(e) => (e.preventDefault(), fetchQuote())}>
        <Field label="Product" name="product_id" problem={problem}>
          {(a) => (
            <select {...a} value={productId} onChange={(e) => setProductId(e.currentTarget.value)}>
              {products.length === 0 && <option value="">No products</option>}
              {products.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name} ({formatMoney(p.price)})
                </option>
              ))}
            </select>
          )}
        </Field>
        <Field label="Country" name="country" problem={problem} hint="Two letters, e.g. DE; empty for none.">
          {(a) => <input {...a} maxLength={2} value={country} onInput={(e) => setCountry(e.currentTarget.value.toUpperCase())} />}
        </Field>
        <Field label="Quantity" name="quantity" problem={problem}>
          {(a) => <input {...a} type="number" min={1} max={999} value={quantity} onInput={(e) => setQuantity(e.currentTarget.value)} />}
        </Field>
        <Field label="Coupon" name="coupon_code" problem={problem}>
          {(a) => <input {...a} value={coupon} onInput={(e) => setCoupon(e.currentTarget.value.trim())} />}
        </Field>
        <button type="submit">Refresh quote</button>
      </form>
      <ProblemAlert problem={problem} fields={['product_id', 'country', 'quantity', 'coupon_code']} />
      <div role="region" aria-live="polite" aria-label="Quote result">
        {quote && (
          <dl class="facts">
            <dt>Unit price</dt>
            <dd>{formatMoney(quote.unit_price)}</dd>
            <dt>Subtotal</dt>
            <dd>{formatMoney(quote.subtotal)}</dd>
            {quote.adjustments.map((a) => (
              <Fragment key={a.rule_id}>
                <dt>{a.description}</dt>
                <dd>{formatMoney(a.amount)}</dd>
              </Fragment>
            ))}
            <dt>Total</dt>
            <dd>
              <strong>{formatMoney(quote.total)}</strong>
            </dd>
            <dt>Rules version</dt>
            <dd>{quote.rules_version}</dd>
          </dl>
        )}
        {quote && quote.adjustments.length === 0 && <Notice>No rule applies to this quote.</Notice>}
      </div>
    </section>
  );
}
