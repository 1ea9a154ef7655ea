import { useState } from 'preact/hooks';
import { api, formatTime, type Me, type Role, type Schemas } from '../client';
import { call, Field, FilterChoice, ListState, Notice, ProblemAlert, TableWrap, useAction, usePaged } from '../ui';

type User = Schemas['AdminUser'];
const ROLES: Role[] = ['customer', 'support', 'admin'];
const STAFF_ROLES: Role[] = ['support', 'admin'];

export function Users({ admin, user: me }: { admin: boolean; user: Me }) {
  const [prefix, setPrefix] = useState('');
  const [role, setRole] = useState<Role | ''>('');
  const [selected, setSelected] = useState<User | null>(null);
  const paged = usePaged(`${prefix}|${role}`, (cursor) =>
    call(api.GET('/v1/admin/users', { params: { query: { email_prefix: prefix || undefined, role: role || undefined, cursor } } })),
  );

  return (
    <>
      <h1>Users</h1>
      <form class="filters" role="search" aria-label="Search users" onSubmit={(e) => e.preventDefault()}>
        <Field label="Email starts with" name="email_prefix" problem={paged.problem}>
          {(a) => <input {...a} type="search" value={prefix} onInput={(e) => setPrefix(e.currentTarget.value.trim())} />}
        </Field>
        <FilterChoice label="Role" name="role" problem={paged.problem} any="Any role" options={ROLES} value={role} onChange={setRole} />
      </form>
      <div class="split">
        <ListState paged={paged} what="users" empty="No users match this search.">
          {(users) => (
            <TableWrap label="Users">
              <thead>
                <tr>
                  <th scope="col">Email</th>
                  <th scope="col">Name</th>
                  <th scope="col">Roles</th>
                  <th scope="col">State</th>
                  <th scope="col">Joined</th>
                </tr>
              </thead>
              <tbody>
                {users.map((u) => (
                  <tr key={u.id} class={selected?.id === u.id ? 'selected' : undefined}>
                    <th scope="row">
                      <button type="button" class="link" aria-label={`Open user ${u.email}`} onClick={() => setSelected(u)}>
                        {u.email}
                      </button>
                    </th>
                    <td>{u.name}</td>
                    <td>{u.roles.join(', ')}</td>
                    <td>
                      {u.disabled ? <span class="badge bad">disabled</span> : <span class="badge ok">active</span>}
                      {!u.email_verified && <span class="badge">unverified</span>}
                    </td>
                    <td>{formatTime(u.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </TableWrap>
          )}
        </ListState>
        {selected && (
          <UserDetail
            key={selected.id}
            user={selected}
            admin={admin}
            self={selected.id === me.id}
            onChange={(u) => (setSelected(u), paged.reload())}
            onClose={() => setSelected(null)}
          />
        )}
      </div>
    </>
  );
}

function UserDetail(props: { user: User; admin: boolean; self: boolean; onChange: (u: User) => void; onClose: () => void }) {
  const { user, admin } = props;
  const [roles, setRoles] = useState<Role[]>(user.roles);
  const [done, setDone] = useState('');
  const action = useAction();

  async function patch(body: Schemas['UpdateUserRequest'], message: string) {
    const next = await action.run(() => call(api.PATCH('/v1/admin/users/{id}', { params: { path: { id: user.id } }, body })));
    if (next) {
      setDone(message);
      props.onChange(next);
    }
  }

  return (
    <section class="panel detail" aria-labelledby="user-title">
      <header class="panel-head">
        <h2 id="user-title">{user.email}</h2>
        <button type="button" onClick={props.onClose} aria-label="Close user details">
          Close
        </button>
      </header>
      <dl class="facts">
        <dt>Id</dt>
        <dd>
          <code>{user.id}</code>
        </dd>
        <dt>Name</dt>
        <dd>{user.name}</dd>
        <dt>Email verified</dt>
        <dd>{user.email_verified ? 'yes' : 'no'}</dd>
        <dt>Roles</dt>
        <dd>{user.roles.join(', ')}</dd>
        <dt>State</dt>
        <dd>{user.disabled ? 'disabled' : 'active'}</dd>
      </dl>
      {done && <Notice>{done}</Notice>}
      {admin && (
        <>
          <form
            aria-label={`Roles of ${user.email}`}
            onSubmit={(e) => {
              e.preventDefault();
              patch({ roles: ['customer', ...roles.filter((r) => r !== 'customer')] }, 'Roles saved.');
            }}
          >
            <fieldset>
              <legend>Roles</legend>
              <p class="muted">Every account is a customer.</p>
              {STAFF_ROLES.map((r) => (
                <label class="check" key={r}>
                  <input
                    type="checkbox"
                    name="roles"
                    checked={roles.includes(r)}
                    onChange={(e) => setRoles(e.currentTarget.checked ? [...roles, r] : roles.filter((x) => x !== r))}
                  />
                  {r}
                </label>
              ))}
            </fieldset>
            <ProblemAlert problem={action.problem} />
            <div class="actions">
              <button type="submit" class="primary" disabled={action.busy}>
                Save roles
              </button>
              {!props.self &&
                (user.disabled ? (
                  <button type="button" disabled={action.busy} onClick={() => patch({ disabled: false }, 'Account enabled.')}>
                    Enable account
                  </button>
                ) : (
                  <button type="button" class="danger" disabled={action.busy} onClick={() => patch({ disabled: true }, 'Account disabled; its sessions were ended.')}>
                    Disable account
                  </button>
                ))}
            </div>
          </form>
        </>
      )}
    </section>
  );
}
