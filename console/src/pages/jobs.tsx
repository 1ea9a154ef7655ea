import { useState } from 'preact/hooks';
import { api, formatTime, type Schemas } from '../client';
import { call, Field, FilterChoice, ListState, Notice, ProblemAlert, TableWrap, useAction, usePaged } from '../ui';

type Job = Schemas['Job'];
type State = Schemas['JobState'];
const STATES: State[] = ['dead', 'retrying', 'queued', 'scheduled', 'running', 'done'];

/** The job queue, dead letters first: an admin retries or discards them. */
export function Jobs({ admin }: { admin: boolean }) {
  const [state, setState] = useState<State | ''>('dead');
  const [kind, setKind] = useState('');
  const [done, setDone] = useState('');
  const action = useAction();
  const paged = usePaged(`${state}|${kind}`, (cursor) =>
    call(api.GET('/v1/admin/jobs', { params: { query: { state: state || undefined, kind: kind || undefined, cursor } } })),
  );

  async function act(job: Job, what: 'retry' | 'discard') {
    const path = { params: { path: { id: job.id } } };
    const ok = await action.run(() =>
      (what === 'retry' ? call(api.POST('/v1/admin/jobs/{id}/retry', path)) : call(api.DELETE('/v1/admin/jobs/{id}', path))).then(() => true),
    );
    if (ok) {
      setDone(what === 'retry' ? `Job ${job.id} queued again.` : `Job ${job.id} discarded.`);
      paged.reload();
    }
  }

  return (
    <>
      <h1>Jobs</h1>
      <form class="filters" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <FilterChoice label="State" name="state" problem={paged.problem} any="Any state" options={STATES} value={state} onChange={setState} />
        <Field label="Kind" name="kind" problem={paged.problem} hint="e.g. webhook.deliver, mail.send">
          {(a) => <input {...a} type="search" value={kind} onChange={(e) => setKind(e.currentTarget.value.trim())} />}
        </Field>
      </form>
      {done && <Notice>{done}</Notice>}
      <ProblemAlert problem={action.problem} />
      <ListState paged={paged} what="jobs" empty={state === 'dead' ? 'No dead jobs: nothing is waiting for a person.' : 'No jobs match these filters.'}>
        {(jobs) => (
          <TableWrap label="Jobs">
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Kind</th>
                <th scope="col">State</th>
                <th scope="col" class="num">Attempts</th>
                <th scope="col">Last error</th>
                <th scope="col">Updated</th>
                {admin && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id}>
                  <th scope="row">
                    <code>{j.id}</code>
                  </th>
                  <td>{j.kind}</td>
                  <td>
                    <span class={`badge ${j.state}`}>{j.state}</span>
                  </td>
                  <td class="num">
                    {j.attempts}/{j.max_attempts}
                  </td>
                  <td>{j.last_error ?? '—'}</td>
                  <td>{formatTime(j.updated_at)}</td>
                  {admin && (
                    <td>
                      <div class="actions">
                        {j.state === 'dead' && (
                          <button type="button" disabled={action.busy} aria-label={`Retry job ${j.id}`} onClick={() => act(j, 'retry')}>
                            Retry
                          </button>
                        )}
                        {j.state === 'dead' && (
                          <button type="button" class="danger" disabled={action.busy} aria-label={`Discard job ${j.id}`} onClick={() => act(j, 'discard')}>
                            Discard
                          </button>
                        )}
                      </div>
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </TableWrap>
        )}
      </ListState>
    </>
  );
}
