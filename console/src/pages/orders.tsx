import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { api, formatMoney, formatTime, newIdempotencyKey, parseAmount, type Schemas } from '../client';
import { call, Field, FilterChoice, ListState, Notice, ProblemAlert, TableWrap, useAction, usePaged } from '../ui';

type Order = Schemas['OrderView'];
type Status = Schemas['OrderStatus'];

const STATUSES: Status[] = ['pending_payment', 'paid', 'shipped', 'delivered', 'failed', 'cancelled', 'partially_refunded', 'refunded'];
const REFUNDABLE: Status[] = ['paid', 'shipped', 'delivered', 'partially_refunded'];

export const statusLabel = (s: string) => s.replace(/_/g, ' ');

export function Orders({ admin }: { admin: boolean }) {
  const [status, setStatus] = useState<Status | ''>('');
  const [userId, setUserId] = useState('');
  const [selected, setSelected] = useState<Order | null>(null);
  const paged = usePaged(`${status}|${userId}`, (cursor) =>
    call(api.GET('/v1/admin/orders', { params: { query: { status: status || undefined, user_id: userId || undefined, cursor } } })),
  );

  function changed(order: Order) {
    setSelected(order);
    paged.reload();
  }

  return (
    <>
      <h1>Orders</h1>
      <form class="filters" aria-label="Filter orders" onSubmit={(e) => e.preventDefault()}>
        <FilterChoice
          label="Status"
          name="status"
          problem={paged.problem}
          any="Any status"
          options={STATUSES}
          value={status}
          onChange={setStatus}
          show={statusLabel}
        />
        <Field label="Customer id" name="user_id" problem={paged.problem} hint="usr_…">
          {(a) => <input {...a} type="search" value={userId} onChange={(e) => setUserId(e.currentTarget.value.trim())} />}
        </Field>
      </form>
      <div class="split">
        <ListState paged={paged} what="orders" empty="No orders match these filters.">
          {(orders) => (
            <TableWrap label="Orders">
              <thead>
                <tr>
                  <th scope="col">Order</th>
                  <th scope="col">Placed</th>
                  <th scope="col">Status</th>
                  <th scope="col">Total</th>
                  <th scope="col">Refunded</th>
                  <th scope="col">Payment</th>
                </tr>
              </thead>
              <tbody>
                {orders.map((o) => (
                  <tr key={o.id} class={selected?.id === o.id ? 'selected' : undefined}>
                    <th scope="row">
                      <button type="button" class="link" aria-label={`Open order ${o.id}`} onClick={() => setSelected(o)}>
                        {o.id}
                      </button>
                    </th>
                    <td>{formatTime(o.created_at)}</td>
                    <td>
                      <span class={`badge ${o.status}`}>{statusLabel(o.status)}</span>
                    </td>
                    <td>{formatMoney(o.total)}</td>
                    <td>{o.refunded.amount ? formatMoney(o.refunded) : '—'}</td>
                    <td>{o.payment.method}</td>
                  </tr>
                ))}
              </tbody>
            </TableWrap>
          )}
        </ListState>
        {selected && <OrderDetail key={selected.id} order={selected} admin={admin} onChange={changed} onClose={() => setSelected(null)} />}
      </div>
    </>
  );
}

function OrderDetail({ order, admin, onChange, onClose }: { order: Order; admin: boolean; onChange: (o: Order) => void; onClose: () => void }) {
  const action = useAction();
  const [done, setDone] = useState('');

  async function advance(step: 'ship' | 'deliver') {
    const path = step === 'ship' ? '/v1/admin/orders/{id}/ship' : '/v1/admin/orders/{id}/deliver';
    const next = await action.run(() => call(api.POST(path, { params: { path: { id: order.id } } })));
    if (next) {
      setDone(step === 'ship' ? 'Order marked shipped.' : 'Order marked delivered.');
      onChange(next);
    }
  }

  return (
    <section class="panel detail" aria-labelledby="order-title">
      <header class="panel-head">
        <h2 id="order-title">Order {order.id}</h2>
        <button type="button" onClick={onClose} aria-label="Close order details">
          Close
        </button>
      </header>
      <dl class="facts">
        <dt>Status</dt>
        <dd>
          <span class={`badge ${order.status}`}>{statusLabel(order.status)}</span>
        </dd>
        <dt>Placed</dt>
        <dd>{formatTime(order.created_at)}</dd>
        <dt>Updated</dt>
        <dd>{formatTime(order.updated_at)}</dd>
        <dt>Payment</dt>
        <dd>
          {order.payment.method}, {order.payment.status}
          {order.payment.provider_ref && ` (${order.payment.provider_ref})`}
        </dd>
        <dt>Subtotal</dt>
        <dd>{formatMoney(order.subtotal)}</dd>
        {order.adjustments.map((a) => (
          <Fragment key={a.rule_id}>
            <dt>{a.description}</dt>
            <dd>{formatMoney(a.amount)}</dd>
          </Fragment>
        ))}
        <dt>Total</dt>
        <dd>{formatMoney(order.total)}</dd>
        <dt>Refunded</dt>
        <dd>{formatMoney(order.refunded)}</dd>
      </dl>
      <TableWrap label={`Items of order ${order.id}`}>
        <thead>
          <tr>
            <th scope="col">Product</th>
            <th scope="col">Quantity</th>
            <th scope="col">Unit price</th>
            <th scope="col">Line total</th>
          </tr>
        </thead>
        <tbody>
          {order.items.map((i) => (
            <tr key={i.product_id}>
              <th scope="row">
                {i.name} <small class="muted">{i.product_id}</small>
              </th>
              <td>{i.quantity}</td>
              <td>{formatMoney(i.unit_price)}</td>
              <td>{formatMoney(i.line_total)}</td>
            </tr>
          ))}
        </tbody>
      </TableWrap>
      {done && <Notice>{done}</Notice>}
      <ProblemAlert problem={action.problem} />
      {admin && (
        <div class="actions">
          {order.status === 'paid' && (
            <button type="button" class="primary" disabled={action.busy} onClick={() => advance('ship')}>
              Mark shipped
            </button>
          )}
          {order.status === 'shipped' && (
            <button type="button" class="primary" disabled={action.busy} onClick={() => advance('deliver')}>
              Mark delivered
            </button>
          )}
        </div>
      )}
      {admin && REFUNDABLE.includes(order.status) && <RefundForm order={order} onRefunded={(o) => (setDone('Refund made.'), onChange(o))} />}
    </section>
  );
}

/** A refund, sent with an idempotency key that stays the same while the form does: a retry
 *  after a lost answer cannot refund twice; a changed amount or reason is a new refund. */
function RefundForm({ order, onRefunded }: { order: Order; onRefunded: (o: Order) => void }) {
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  const [key, setKey] = useState(newIdempotencyKey);
  const action = useAction();
  const currency = order.total.currency;

  function edit(set: (v: string) => void) {
    return (e: Event) => {
      set((e.currentTarget as HTMLInputElement).value);
      setKey(newIdempotencyKey());
    };
  }

  async function submit(e: Event) {
    e.preventDefault();
    const minor = amount.trim() ? parseAmount(amount, currency) : undefined;
    if (minor === null) {
      action.setProblem({
        type: 'about:blank',
        title: 'Invalid amount',
        status: 422,
        detail: 'the amount is not a number of the currency',
        code: 'validation_failed',
        request_id: '',
        errors: [{ field: 'amount', code: 'invalid', message: `Enter an amount such as 12.50 (${currency}).` }],
      });
      return;
    }
    const body = { reason, amount: minor === undefined ? undefined : { amount: minor, currency } };
    const next = await action.run(() =>
      call(api.POST('/v1/admin/orders/{id}/refunds', { params: { path: { id: order.id }, header: { 'Idempotency-Key': key } }, body })),
    );
    if (next) {
      setAmount('');
      setReason('');
      setKey(newIdempotencyKey());
      onRefunded(next);
    }
  }

  return (
    <form class="panel-form" aria-label={`Refund order ${order.id}`} onSubmit={submit} noValidate>
      <h3>Refund</h3>
      <Field label={`Refund amount (${currency})`} name="amount" problem={action.problem} hint="Leave empty to refund everything not yet refunded.">
        {(a) => <input {...a} inputMode="decimal" value={amount} onInput={edit(setAmount)} />}
      </Field>
      <Field label="Refund reason" name="reason" problem={action.problem}>
        {(a) => <input {...a} required maxLength={500} value={reason} onInput={edit(setReason)} />}
      </Field>
      <ProblemAlert problem={action.problem} fields={['amount', 'reason']} />
      <button type="submit" class="danger" disabled={action.busy}>
        Refund
      </button>
    </form>
  );
}
