// Shared pieces of every page: fields with their problem+json errors, alerts, loading and
// empty states, cursor pagination, and actions that report their problem.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useId, useState } from 'preact/hooks';
import { networkProblem, type Problem } from './client';
import { BASE, onLinkClick } from './router';

/** A failed call: the API's problem document. */
export class ProblemError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

export function toProblem(e: unknown): Problem {
  return e instanceof ProblemError ? e.problem : networkProblem(e);
}

/** The data of an openapi-fetch answer, or a `ProblemError` with the problem it carried. */
export async function call<T>(pending: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await pending;
  if (!response.ok) {
    const problem = (error && typeof error === 'object' ? error : {}) as Partial<Problem>;
    throw new ProblemError({
      type: problem.type ?? 'about:blank',
      title: problem.title ?? response.statusText,
      status: response.status,
      detail: problem.detail ?? `the server answered ${response.status}`,
      code: problem.code ?? 'http',
      request_id: problem.request_id ?? response.headers.get('x-request-id') ?? '',
      errors: problem.errors,
    });
  }
  return data as T;
}

/** The message for `field` in a problem (also for its sub-fields, as `price.amount`). */
export function fieldError(problem: Problem | null, field: string): string | undefined {
  const hit = problem?.errors?.find((e) => e.field === field || e.field.startsWith(`${field}.`) || e.field.startsWith(`${field}[`));
  return hit?.message;
}

/** Runs one action at a time and keeps its problem for the form to show. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<Problem | null>(null);
  async function run<T>(action: () => Promise<T>): Promise<T | undefined> {
    setBusy(true);
    setProblem(null);
    try {
      return await action();
    } catch (e) {
      setProblem(toProblem(e));
      return undefined;
    } finally {
      setBusy(false);
    }
  }
  return { busy, problem, setProblem, run };
}

export function Link(props: { to: string; children: ComponentChildren; current?: boolean; class?: string }) {
  return (
    <a
      href={BASE + props.to}
      class={props.class}
      aria-current={props.current ? 'page' : undefined}
      onClick={(e) => onLinkClick(e as unknown as MouseEvent, props.to)}
    >
      {props.children}
    </a>
  );
}

type FieldProps = {
  label: string;
  /** The API's name for the value: its errors are shown here. */
  name: string;
  problem: Problem | null;
  hint?: string;
  children: (attrs: { id: string; name: string; 'aria-invalid'?: boolean; 'aria-describedby'?: string }) => JSX.Element;
};

/** A labelled control with its hint and the problem's message for its field. */
export function Field({ label, name, problem, hint, children }: FieldProps) {
  const id = useId();
  const error = fieldError(problem, name);
  const describedBy = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
  return (
    <div class={`field${error ? ' invalid' : ''}`}>
      <label for={id}>{label}</label>
      {children({ id, name, 'aria-invalid': error ? true : undefined, 'aria-describedby': describedBy })}
      {hint && (
        <small id={`${id}-hint`} class="hint">
          {hint}
        </small>
      )}
      {error && (
        <small id={`${id}-error`} class="error">
          {error}
        </small>
      )}
    </div>
  );
}

/** A list filter that is one of `options`, or none of them (`''`, offered as `any`). */
export function FilterChoice<T extends string>(props: {
  label: string;
  name: string;
  problem: Problem | null;
  any: string;
  options: readonly T[];
  value: T | '';
  onChange: (value: T | '') => void;
  show?: (option: T) => string;
}) {
  const { label, name, problem, any, options, value, onChange, show = (o: T) => o } = props;
  return (
    <Field label={label} name={name} problem={problem}>
      {(a) => (
        <select {...a} value={value} onChange={(e) => onChange(e.currentTarget.value as T | '')}>
          <option value="">{any}</option>
          {options.map((o) => (
            <option key={o} value={o}>
              {show(o)}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

/** The problem's summary, and the field errors no field on the form shows. */
export function ProblemAlert({ problem, fields = [] }: { problem: Problem | null; fields?: string[] }) {
  if (!problem) return null;
  const others = (problem.errors ?? []).filter((e) => !fields.some((f) => fieldError({ ...problem, errors: [e] }, f)));
  // When every error sits next to its field, the summary only points there.
  const detail = problem.errors?.length && others.length === 0 ? 'check the fields marked above.' : problem.detail;
  return (
    <div role="alert" class="alert">
      <strong>{problem.title}</strong>: {detail}
      {others.length > 0 && (
        <ul>
          {others.map((e) => (
            <li key={e.field}>
              {e.field}: {e.message}
            </li>
          ))}
        </ul>
      )}
      {problem.request_id && <small class="request-id"> (request {problem.request_id})</small>}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p role="status" class="muted">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty muted">{children}</p>;
}

export function Notice({ children }: { children: ComponentChildren }) {
  return (
    <p role="status" class="notice">
      {children}
    </p>
  );
}

/** A secret the server shows this once (a signing secret, an API key), until the user has stored it. */
export function SecretOnce({ message, label, secret, what, onStored }: { message: string; label: string; secret: string; what: string; onStored: () => void }) {
  return (
    <div class="notice" role="status">
      <p>{message}</p>
      <p class="secret" aria-label={label}>
        {secret}
      </p>
      <button type="button" onClick={onStored}>
        I have stored the {what}
      </button>
    </div>
  );
}

export type PageOf<T> = { data: T[]; next_cursor: string | null };

/**
 * One page of a cursor-paginated list. `filterKey` names the filters: a new one goes back to
 * the first page. Earlier cursors are kept so "Previous page" needs no offset.
 */
export function usePaged<T>(filterKey: string, load: (cursor: string | undefined) => Promise<PageOf<T>>) {
  const [stack, setStack] = useState<{ key: string; cursors: (string | undefined)[] }>({ key: filterKey, cursors: [undefined] });
  const cursors = stack.key === filterKey ? stack.cursors : [undefined];
  const cursor = cursors[cursors.length - 1];
  const [reloads, setReloads] = useState(0);
  const [state, setState] = useState<{ loading: boolean; problem: Problem | null; page: PageOf<T> | null }>({
    loading: true,
    problem: null,
    page: null,
  });
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true, problem: null }));
    load(cursor).then(
      (page) => live && setState({ loading: false, problem: null, page }),
      (e) => live && setState({ loading: false, problem: toProblem(e), page: null }),
    );
    return () => {
      live = false;
    };
    // `load` closes over the filters, which `filterKey` names.
  }, [filterKey, cursor, cursors.length, reloads]);
  return {
    ...state,
    pageNumber: cursors.length,
    next: () => state.page?.next_cursor && setStack({ key: filterKey, cursors: [...cursors, state.page.next_cursor] }),
    previous: () => cursors.length > 1 && setStack({ key: filterKey, cursors: cursors.slice(0, -1) }),
    reload: () => setReloads((n) => n + 1),
  };
}

export function Pager({ paged, label }: { paged: ReturnType<typeof usePaged<unknown>>; label: string }) {
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={paged.previous} disabled={paged.pageNumber <= 1 || paged.loading}>
        Previous page
      </button>
      <span>Page {paged.pageNumber}</span>
      <button type="button" onClick={paged.next} disabled={!paged.page?.next_cursor || paged.loading}>
        Next page
      </button>
      <button type="button" onClick={paged.reload} disabled={paged.loading}>
        Refresh {label}
      </button>
    </nav>
  );
}

/** A wide table that scrolls sideways on a phone, reachable by keyboard. */
export function TableWrap({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    <div class="table-wrap" role="region" aria-label={label} tabIndex={0}>
      <table>
        <caption class="visually-hidden">{label}</caption>
        {children}
      </table>
    </div>
  );
}

/** A list page's states: loading, its problem, empty, or the rows. */
export function ListState<T>(props: {
  paged: ReturnType<typeof usePaged<T>>;
  what: string;
  empty: string;
  children: (rows: T[]) => JSX.Element;
}) {
  const { paged } = props;
  if (paged.problem) return <div class="list"><ProblemAlert problem={paged.problem} /></div>;
  if (!paged.page) return <div class="list"><Loading what={props.what} /></div>;
  return (
    <div class="list" aria-busy={paged.loading}>
      {paged.loading && <Loading what={props.what} />}
      {paged.page.data.length === 0 ? <Empty>{props.empty}</Empty> : props.children(paged.page.data)}
      <Pager paged={paged as ReturnType<typeof usePaged<unknown>>} label={props.what} />
    </div>
  );
}
