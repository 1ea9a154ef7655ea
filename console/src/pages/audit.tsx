import { useState } from 'preact/hooks';
import { api, formatTime, type Schemas } from '../client';
import { call, Field, FilterChoice, ListState, Notice, ProblemAlert, TableWrap, useAction, usePaged } from '../ui';

type Action = Schemas['Action'];
const ACTIONS: Action[] = ['account.login_succeeded', 'account.login_failed', 'account.refresh_token_reused', 'account.password_changed', 'account.password_reset',
  'account.mfa_enabled', 'account.mfa_disabled', 'account.roles_changed', 'account.disabled', 'account.enabled', 'product.price_changed', 'pricing.rule_created',
  'pricing.rule_updated', 'pricing.rule_deleted', 'order.refunded', 'payment.captured', 'ledger.verification_failed', 'keys.rotated'];

const instant = (local: string) => (local ? new Date(local).toISOString() : undefined);

export function Audit() {
  const [actor, setActor] = useState('');
  const [action, setAction] = useState<Action | ''>('');
  const [target, setTarget] = useState('');
  const [since, setSince] = useState('');
  const [until, setUntil] = useState('');
  const paged = usePaged([actor, action, target, since, until].join('|'), (cursor) =>
    call(
      api.GET('/v1/admin/audit', {
        params: { query: { actor: actor || undefined, action: action || undefined, target: target || undefined, since: instant(since), until: instant(until), cursor } },
      }),
    ),
  );

  return (
    <>
      <h1>Audit log</h1>
      <ChainCheck />
      <form class="filters" aria-label="Filter audit entries" onSubmit={(e) => e.preventDefault()}>
        <Field label="Actor" name="actor" problem={paged.problem} hint="usr_…">
          {(a) => <input {...a} type="search" value={actor} onChange={(e) => setActor(e.currentTarget.value.trim())} />}
        </Field>
        <FilterChoice label="Action" name="action" problem={paged.problem} any="Any action" options={ACTIONS} value={action} onChange={setAction} />
        <Field label="Target" name="target" problem={paged.problem} hint="usr_…, prd_…, rul_…, ord_…">
          {(a) => <input {...a} type="search" value={target} onChange={(e) => setTarget(e.currentTarget.value.trim())} />}
        </Field>
        <Field label="From" name="since" problem={paged.problem}>
          {(a) => <input {...a} type="datetime-local" value={since} onChange={(e) => setSince(e.currentTarget.value)} />}
        </Field>
        <Field label="Until" name="until" problem={paged.problem}>
          {(a) => <input {...a} type="datetime-local" value={until} onChange={(e) => setUntil(e.currentTarget.value)} />}
        </Field>
      </form>
      <ListState paged={paged} what="audit entries" empty="No audit entries match these filters.">
        {(entries) => (
          <TableWrap label="Audit entries">
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Action</th>
                <th scope="col">Actor</th>
                <th scope="col">Target</th>
                <th scope="col">IP</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <tr key={e.id}>
                  <th scope="row">{formatTime(e.at)}</th>
                  <td>{e.action}</td>
                  <td>
                    <code>{e.actor ?? 'Keel'}</code>
                  </td>
                  <td>
                    <code>{e.target ?? '—'}</code>
                  </td>
                  <td>{e.ip ?? '—'}</td>
                  <td>
                    <pre>{JSON.stringify(e.details)}</pre>
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

function ChainCheck() {
  const action = useAction();
  const [verdict, setVerdict] = useState<Schemas['Verdict'] | null>(null);
  return (
    <section class="panel" aria-labelledby="chain-title">
      <h2 id="chain-title">Hash chain</h2>
      <p class="muted">Each entry's hash covers the one before: an edited or removed entry breaks the chain.</p>
      <button type="button" disabled={action.busy} onClick={async () => setVerdict((await action.run(() => call(api.GET('/v1/admin/audit/verify')))) ?? null)}>
        {action.busy ? 'Verifying…' : 'Verify the chain'}
      </button>
      <ProblemAlert problem={action.problem} />
      {verdict &&
        (verdict.valid ? (
          <Notice>The chain is intact: {verdict.entries} entries checked.</Notice>
        ) : (
          <p role="alert" class="alert">
            The chain is broken after {verdict.entries} entries checked
            {verdict.first_bad ? `: first bad entry ${JSON.stringify(verdict.first_bad)}` : '.'}
          </p>
        ))}
    </section>
  );
}
