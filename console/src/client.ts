// The typed client of Keel's API (generated from /openapi.json into api.d.ts) and the session
// it carries: the access token lives in memory only, the refresh token in sessionStorage (so a
// reload in the same tab stays signed in, and closing the tab ends it).
import createClient from 'openapi-fetch';
import { useEffect, useState } from 'preact/hooks';
import type { components, paths } from './api';
import { passkeyProblem, usePasskey } from './passkey';

export type Schemas = components['schemas'];
export type Problem = Schemas['Problem'];
export type Me = Schemas['Me'];
export type Money = Schemas['Money'];

const REFRESH_KEY = 'keel.console.refresh';

let accessToken: string | null = null;
let refreshing: Promise<boolean> | null = null;
const listeners = new Set<() => void>();
let me: Me | null = null;

export function currentUser(): Me | null {
  return me;
}

export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function setSession(tokens: Schemas['TokenResponse'] | null) {
  accessToken = tokens?.access_token ?? null;
  me = tokens?.user ?? null;
  if (tokens) sessionStorage.setItem(REFRESH_KEY, tokens.refresh_token);
  else sessionStorage.removeItem(REFRESH_KEY);
  listeners.forEach((l) => l());
}

export function accessTokenNow(): string | null {
  return accessToken;
}

/** Spends the stored refresh token for a new pair; `false` when there is none or it was refused. */
export function refreshSession(): Promise<boolean> {
  // One refresh at a time: a refresh token works once, so two at once would revoke the session.
  refreshing ??= (async () => {
    const refresh_token = sessionStorage.getItem(REFRESH_KEY);
    if (!refresh_token) return false;
    const res = await fetch('/v1/auth/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token }),
    });
    if (!res.ok) {
      setSession(null);
      return false;
    }
    setSession((await res.json()) as Schemas['TokenResponse']);
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

function authorised(request: Request): Request {
  if (accessToken) request.headers.set('Authorization', `Bearer ${accessToken}`);
  return request;
}

/** Sends with the access token; on a 401, refreshes once and tries again. */
async function authedFetch(input: Request): Promise<Response> {
  const again = input.clone();
  const res = await fetch(authorised(input));
  if (res.status !== 401 || !sessionStorage.getItem(REFRESH_KEY)) return res;
  return (await refreshSession()) ? fetch(authorised(again)) : res;
}

export const api = createClient<paths>({ baseUrl: '', fetch: authedFetch });

export type LoginResult = { ok: true } | { ok: false; problem: Problem };

export async function signIn(email: string, password: string, totp_code?: string): Promise<LoginResult> {
  const { data, error } = await createClient<paths>({ baseUrl: '' }).POST('/v1/auth/login', {
    body: { email, password, totp_code: totp_code || undefined },
  });
  if (error) return { ok: false, problem: error as Problem };
  return startSession(data);
}

/** Signs in with a passkey the browser finds on its own (no email: a discoverable credential). */
export async function signInWithPasskey(): Promise<LoginResult> {
  const anonymous = createClient<paths>({ baseUrl: '' });
  const started = await anonymous.POST('/v1/auth/passkeys/login/start', { body: {} });
  if (started.error) return { ok: false, problem: started.error as Problem };
  let credential;
  try {
    credential = await usePasskey(started.data.options);
  } catch (e) {
    return { ok: false, problem: passkeyProblem(e) };
  }
  const { data, error } = await anonymous.POST('/v1/auth/passkeys/login/finish', { body: { challenge_id: started.data.challenge_id, credential } });
  if (error) return { ok: false, problem: error as Problem };
  return startSession(data);
}

/** Exchanges a social login's one-time code (from `#code=`), with the TOTP code when asked. */
export async function exchangeLoginCode(code: string, totp_code?: string): Promise<LoginResult> {
  const { data, error } = await createClient<paths>({ baseUrl: '' }).POST('/v1/auth/oauth/exchange', {
    body: { code, totp_code: totp_code || undefined },
  });
  if (error) return { ok: false, problem: error as Problem };
  return startSession(data);
}

/** Keeps a new sign-in's session, if it is a staff account's. */
async function startSession(data: Schemas['TokenResponse']): Promise<LoginResult> {
  // The console is for staff: another account's new session ends at once.
  if (!isStaff(data.user)) {
    await fetch('/v1/auth/logout', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: data.refresh_token }),
    }).catch(() => undefined);
    const detail = 'this account has neither the support nor the admin role';
    return { ok: false, problem: { type: 'about:blank', title: 'Not a staff account', status: 403, detail, code: 'forbidden', request_id: '' } };
  }
  setSession(data);
  return { ok: true };
}

export async function signOut(): Promise<void> {
  const refresh_token = sessionStorage.getItem(REFRESH_KEY);
  if (refresh_token) await api.POST('/v1/auth/logout', { body: { refresh_token } }).catch(() => undefined);
  setSession(null);
}

/** Resumes the tab's session after a reload, if it has one. */
export async function resumeSession(): Promise<void> {
  if (sessionStorage.getItem(REFRESH_KEY)) await refreshSession();
}

export type Role = Schemas['Role'];

export function isStaff(user: Me | null): boolean {
  return !!user && (user.roles.includes('admin') || user.roles.includes('support'));
}

export function isAdmin(user: Me | null): boolean {
  return !!user && user.roles.includes('admin');
}

/** A problem for a failure that never reached the API (offline, refused). */
export function networkProblem(e: unknown): Problem {
  return {
    type: 'about:blank',
    title: 'Network error',
    status: 0,
    detail: e instanceof Error ? e.message : 'the server could not be reached',
    code: 'network',
    request_id: '',
  };
}

/** Digits after the point in `currency`'s minor unit (2 for USD, 0 for JPY). */
export function minorDigits(currency: string): number {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits ?? 2;
}

export function formatMoney(m: Money): string {
  const format = new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currency });
  return format.format(m.amount / 10 ** minorDigits(m.currency));
}

/** "12.34" in `currency` → 1234 minor units; `null` when it is not an amount. */
export function parseAmount(text: string, currency: string): number | null {
  const digits = minorDigits(currency);
  const match = /^\s*(\d+)(?:[.,](\d*))?\s*$/.exec(text);
  if (!match || (match[2] ?? '').length > digits) return null;
  return Number(match[1]) * 10 ** digits + Number((match[2] ?? '').padEnd(digits, '0') || '0');
}

/** 1234 minor units → "12.34", for an input's value. */
export function amountText(m: Money): string {
  const digits = minorDigits(m.currency);
  return digits === 0 ? String(m.amount) : (m.amount / 10 ** digits).toFixed(digits);
}

export function formatTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}

let currency: Promise<string> | null = null;

/** The deployment's one currency (`USD` until known), read once from the caller's wallet. */
export function useCurrency(): string {
  const [code, setCode] = useState('USD');
  useEffect(() => {
    currency ??= api.GET('/v1/wallet').then(({ data }) => data?.currency ?? 'USD', () => 'USD');
    currency.then(setCode);
  }, []);
  return code;
}
