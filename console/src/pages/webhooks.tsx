import { useState } from 'preact/hooks';
import { api, formatTime, type Schemas } from '../client';
import { call, Field, ListState, Notice, ProblemAlert, SecretOnce, TableWrap, useAction, usePaged } from '../ui';

type Endpoint = Schemas['Endpoint'];
type EventName = Schemas['NewEndpoint']['events'][number];
const EVENTS: EventName[] = ['*', 'order.updated', 'product.updated', 'pricing.rules_changed', 'wallet.updated', 'notification.created', 'account.email_verified',
  'account.password_changed', 'account.password_reset', 'account.mfa_enabled', 'account.mfa_disabled'];

/** Outgoing webhook endpoints (admin only: the routes are). */
export function Webhooks() {
  const [selected, setSelected] = useState<Endpoint | null>(null);
  const [created, setCreated] = useState<Schemas['CreatedEndpoint'] | null>(null);
  const action = useAction();
  const [done, setDone] = useState('');
  const paged = usePaged('endpoints', (cursor) => call(api.GET('/v1/admin/webhook-endpoints', { params: { query: { cursor } } })));

  async function ping(e: Endpoint) {
    const ok = await action.run(() => call(api.POST('/v1/admin/webhook-endpoints/{id}/ping', { params: { path: { id: e.id } } })).then(() => true));
    if (ok) {
      setDone(`Ping queued for ${e.url}: see its delivery log.`);
      setSelected(e);
    }
  }

  async function remove(e: Endpoint) {
    const ok = await action.run(() => call(api.DELETE('/v1/admin/webhook-endpoints/{id}', { params: { path: { id: e.id } } })).then(() => true));
    if (ok) {
      setDone(`Endpoint ${e.url} deleted.`);
      if (selected?.id === e.id) setSelected(null);
      paged.reload();
    }
  }

  return (
    <>
      <h1>Webhook endpoints</h1>
      <NewEndpoint onCreated={(e) => (setCreated(e), paged.reload())} />
      {created && (
        <SecretOnce
          message="Endpoint created. Its signing secret is shown this once: store it where the receiver can read it."
          label="Signing secret"
          secret={created.secret}
          what="secret"
          onStored={() => setCreated(null)}
        />
      )}
      {done && <Notice>{done}</Notice>}
      <ProblemAlert problem={action.problem} />
      <ListState paged={paged} what="webhook endpoints" empty="No webhook endpoints yet.">
        {(endpoints) => (
          <TableWrap label="Webhook endpoints">
            <thead>
              <tr>
                <th scope="col">URL</th>
                <th scope="col">Events</th>
                <th scope="col">Created</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {endpoints.map((e) => (
                <tr key={e.id} class={selected?.id === e.id ? 'selected' : undefined}>
                  <th scope="row">
                    <code>{e.url}</code>
                  </th>
                  <td>{e.events.join(', ')}</td>
                  <td>{formatTime(e.created_at)}</td>
                  <td>
                    <div class="actions">
                      <button type="button" aria-label={`Delivery log of ${e.url}`} onClick={() => setSelected(e)}>
                        Delivery log
                      </button>
                      <button type="button" disabled={action.busy} aria-label={`Ping ${e.url}`} onClick={() => ping(e)}>
                        Ping
                      </button>
                      <button type="button" class="danger" disabled={action.busy} aria-label={`Delete ${e.url}`} onClick={() => remove(e)}>
                        Delete
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </TableWrap>
        )}
      </ListState>
      {selected && <Deliveries key={selected.id} endpoint={selected} onClose={() => setSelected(null)} />}
    </>
  );
}

function NewEndpoint({ onCreated }: { onCreated: (e: Schemas['CreatedEndpoint']) => void }) {
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<EventName[]>(['order.updated']);
  const action = useAction();

  async function submit(e: Event) {
    e.preventDefault();
    const made = await action.run(() => call(api.POST('/v1/admin/webhook-endpoints', { body: { url, events } })));
    if (made) {
      setUrl('');
      onCreated(made);
    }
  }

  return (
    <form class="panel" aria-label="New webhook endpoint" onSubmit={submit} noValidate>
      <h2>New endpoint</h2>
      <Field label="Endpoint URL" name="url" problem={action.problem} hint="Where Keel POSTs signed events (an HTTPS URL).">
        {(a) => <input {...a} type="url" required value={url} onInput={(e) => setUrl(e.currentTarget.value.trim())} />}
      </Field>
      <fieldset aria-invalid={action.problem?.errors?.some((x) => x.field.startsWith('events')) || undefined}>
        <legend>Events to send</legend>
        {EVENTS.map((name) => (
          <label class="check" key={name}>
            <input
              type="checkbox"
              name="events"
              checked={events.includes(name)}
              onChange={(e) => setEvents(e.currentTarget.checked ? [...events, name] : events.filter((x) => x !== name))}
            />
            {name === '*' ? 'Every event (*)' : name}
          </label>
        ))}
      </fieldset>
      <ProblemAlert problem={action.problem} fields={['url']} />
      <button type="submit" class="primary" disabled={action.busy}>
        Create endpoint
      </button>
    </form>
  );
}

function Deliveries({ endpoint, onClose }: { endpoint: Endpoint; onClose: () => void }) {
  const paged = usePaged(endpoint.id, (cursor) =>
    call(api.GET('/v1/admin/webhook-endpoints/{id}/deliveries', { params: { path: { id: endpoint.id }, query: { cursor } } })),
  );
  return (
    <section class="panel" aria-labelledby="deliveries-title">
      <header class="panel-head">
        <h2 id="deliveries-title">Delivery log of {endpoint.url}</h2>
        <button type="button" onClick={onClose} aria-label="Close delivery log">
          Close
        </button>
      </header>
      <ListState paged={paged} what="deliveries" empty="Nothing delivered yet.">
        {(rows) => (
          <TableWrap label={`Deliveries to ${endpoint.url}`}>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Event</th>
                <th scope="col" class="num">Attempt</th>
                <th scope="col" class="num">Status</th>
                <th scope="col" class="num">Duration</th>
                <th scope="col">Error</th>
                <th scope="col">Next retry</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((d) => (
                <tr key={d.id}>
                  <th scope="row">{formatTime(d.created_at)}</th>
                  <td>{d.event_type}</td>
                  <td class="num">{d.attempt}</td>
                  <td class="num">{d.status_code ?? '—'}</td>
                  <td class="num">{d.duration_ms} ms</td>
                  <td>{d.error ?? '—'}</td>
                  <td>{formatTime(d.next_retry_at)}</td>
                </tr>
              ))}
            </tbody>
          </TableWrap>
        )}
      </ListState>
    </section>
  );
}
