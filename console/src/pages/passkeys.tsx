import { useState } from 'preact/hooks';
import { api, formatTime, type Schemas } from '../client';
import { createPasskey, passkeyProblem } from '../passkey';
import { call, Field, ListState, Notice, ProblemAlert, ProblemError, TableWrap, useAction, usePaged } from '../ui';

type Passkey = Schemas['PasskeyView'];

/** The signed-in user's own passkeys: add one (this browser's authenticator), see them, remove one. */
export function Passkeys() {
  const [name, setName] = useState('');
  const [done, setDone] = useState('');
  const action = useAction();
  const paged = usePaged('passkeys', (cursor) => call(api.GET('/v1/me/passkeys', { params: { query: { cursor } } })));

  async function add(e: Event) {
    e.preventDefault();
    setDone('');
    const added = await action.run(async () => {
      const started = await call(api.POST('/v1/auth/passkeys/register/start'));
      const credential = await createPasskey(started.options).catch((e) => {
        throw new ProblemError(passkeyProblem(e));
      });
      const body = { challenge_id: started.challenge_id, credential, name: name.trim() || undefined };
      return call(api.POST('/v1/auth/passkeys/register/finish', { body }));
    });
    if (added) {
      setDone(`Passkey “${added.name}” added: you can sign in with it.`);
      setName('');
      paged.reload();
    }
  }

  async function remove(p: Passkey) {
    setDone('');
    const ok = await action.run(() => call(api.DELETE('/v1/me/passkeys/{id}', { params: { path: { id: p.id } } })).then(() => true));
    if (ok) {
      setDone(`Passkey “${p.name}” removed.`);
      paged.reload();
    }
  }

  return (
    <>
      <h1>Your passkeys</h1>
      <p class="muted">A passkey signs you in without a password or an authentication code: your device checks it is you.</p>
      <form class="filters" aria-label="Add a passkey" onSubmit={add} noValidate>
        <Field label="Name" name="name" problem={action.problem} hint="To tell your passkeys apart, such as “Work laptop”.">
          {(a) => <input {...a} maxLength={100} value={name} onInput={(e) => setName(e.currentTarget.value)} />}
        </Field>
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? 'Waiting for the passkey…' : 'Add a passkey'}
        </button>
      </form>
      {done && <Notice>{done}</Notice>}
      <ProblemAlert problem={action.problem} fields={['name']} />
      <ListState paged={paged} what="passkeys" empty="No passkeys yet.">
        {(passkeys) => (
          <TableWrap label="Passkeys">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Added</th>
                <th scope="col">Last used</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {passkeys.map((p) => (
                <tr key={p.id}>
                  <td>{p.name}</td>
                  <td>{formatTime(p.created_at)}</td>
                  <td>{formatTime(p.last_used_at)}</td>
                  <td>
                    <button type="button" onClick={() => remove(p)} disabled={action.busy} aria-label={`Remove passkey ${p.name}`}>
                      Remove
                    </button>
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
