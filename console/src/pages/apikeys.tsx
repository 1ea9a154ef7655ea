import { useState } from 'preact/hooks';
import { api, formatTime, type Schemas } from '../client';
import { call, Field, ListState, Notice, ProblemAlert, SecretOnce, TableWrap, useAction, usePaged } from '../ui';

type ApiKey = Schemas['ApiKeyView'];
type Scope = Schemas['Scope'];
const SCOPES: Scope[] = ['products:read', 'products:write', 'orders:read', 'orders:write', 'users:read', 'users:write', 'pricing:write',
  'jobs:write', 'webhooks:write', 'audit:read'];

/** API keys for the shop's servers (admin only: the routes are). */
export function ApiKeys() {
  const [minted, setMinted] = useState<{ verb: string; key: Schemas['CreatedKey'] } | null>(null);
  const action = useAction();
  const [done, setDone] = useState('');
  const paged = usePaged('api-keys', (cursor) => call(api.GET('/v1/admin/api-keys', { params: { query: { cursor } } })));

  async function rotate(k: ApiKey) {
    const key = await action.run(() =>
      call(api.POST('/v1/admin/api-keys/{id}/rotate', { params: { path: { id: k.id } }, body: { grace_seconds: 86400 } })),
    );
    if (key) {
      setDone('');
      setMinted({ verb: `Key “${k.name}” rotated: the old key keeps working for 24 hours.`, key });
      paged.reload();
    }
  }

  async function revoke(k: ApiKey) {
    const ok = await action.run(() => call(api.DELETE('/v1/admin/api-keys/{id}', { params: { path: { id: k.id } } })).then(() => true));
    if (ok) {
      setDone(`Key “${k.name}” (${k.prefix}…) revoked: it is refused from now on.`);
      paged.reload();
    }
  }

  return (
    <>
      <h1>API keys</h1>
      <NewKey onCreated={(key) => (setDone(''), setMinted({ verb: `Key “${key.name}” created.`, key }), paged.reload())} />
      {minted && (
        <SecretOnce
          message={`${minted.verb} The key is shown this once: store it where the server that uses it can read it.`}
          label="API key"
          secret={minted.key.key}
          what="key"
          onStored={() => setMinted(null)}
        />
      )}
      {done && <Notice>{done}</Notice>}
      <ProblemAlert problem={action.problem} />
      <ListState paged={paged} what="API keys" empty="No API keys yet.">
        {(keys) => (
          <TableWrap label="API keys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Key</th>
                <th scope="col">Scopes</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr key={k.id}>
                  <th scope="row">{k.name}</th>
                  <td>
                    <code>{k.prefix}…</code>
                    {k.rotated_to && <span class="muted"> (rotated)</span>}
                  </td>
                  <td>{k.scopes.join(', ')}</td>
                  <td>{k.last_used_at ? formatTime(k.last_used_at) : 'never'}</td>
                  <td>{k.expires_at ? formatTime(k.expires_at) : 'never'}</td>
                  <td>
                    <div class="actions">
                      {!k.rotated_to && (
                        <button type="button" disabled={action.busy} aria-label={`Rotate ${k.name}`} onClick={() => rotate(k)}>
                          Rotate
                        </button>
                      )}
                      <button type="button" class="danger" disabled={action.busy} aria-label={`Revoke ${k.name}`} onClick={() => revoke(k)}>
                        Revoke
                      </button>
                    </div>
                  </td>
                </tr>
              ))}
            </tbody>
          </TableWrap>
        )}
      </ListState>
    </>
  );
}

function NewKey({ onCreated }: { onCreated: (k: Schemas['CreatedKey']) => void }) {
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Scope[]>([]);
  const action = useAction();

  async function submit(e: Event) {
    e.preventDefault();
    const made = await action.run(() => call(api.POST('/v1/admin/api-keys', { body: { name, scopes } })));
    if (made) {
      setName('');
      setScopes([]);
      onCreated(made);
    }
  }

  return (
    <form class="panel" aria-label="New API key" onSubmit={submit} noValidate>
      <h2>New key</h2>
      <Field label="Name" name="name" problem={action.problem} hint="What the key is for, such as “ERP stock sync”.">
        {(a) => <input {...a} required value={name} onInput={(e) => setName(e.currentTarget.value)} />}
      </Field>
      <fieldset aria-invalid={action.problem?.errors?.some((x) => x.field.startsWith('scopes')) || undefined}>
        <legend>Scopes (a write scope covers reading)</legend>
        {SCOPES.map((scope) => (
          <label class="check" key={scope}>
            <input
              type="checkbox"
              name="scopes"
              checked={scopes.includes(scope)}
              onChange={(e) => setScopes(e.currentTarget.checked ? [...scopes, scope] : scopes.filter((x) => x !== scope))}
            />
            {scope}
          </label>
        ))}
      </fieldset>
      <ProblemAlert problem={action.problem} fields={['name']} />
      <button type="submit" class="primary" disabled={action.busy}>
        Create key
      </button>
    </form>
  );
}
