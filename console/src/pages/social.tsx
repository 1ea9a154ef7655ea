// Social sign-in on the sign-in page: a "Continue with …" button per configured provider, and the
// console's return from one (`#code=` exchanged for a session, with the TOTP step when the account
// has MFA on; `#error=` explained). Kept apart from signin.tsx, which imports it.
import { useEffect, useState } from 'preact/hooks';
import { api, exchangeLoginCode, type Problem, type Schemas } from '../client';
import { BASE } from '../router';
import { Field, ProblemAlert, useAction } from '../ui';

/** What each `#error=` of a callback means for the person at the console. */
const ERRORS: Record<string, string> = {
  access_denied: 'You declined at the provider.',
  provider_error: 'The provider failed or could not be reached; try again.',
  invalid_id_token: 'The provider’s answer could not be trusted; try again.',
  email_missing: 'The provider gave no email address.',
  email_taken: 'An account has this email, and the provider did not verify it: sign in with your password, then link the provider.',
  identity_taken: 'This identity belongs to another account.',
  account_disabled: 'This account is disabled.',
  server_error: 'Keel failed; try again.',
};

function problem(title: string, detail: string, code: string): Problem {
  return { type: 'about:blank', title, status: 400, detail, code, request_id: '' };
}

/** The result a provider sent back in the fragment, read once and cleared from the address bar. */
function takeFragment(): { code?: string; error?: string } {
  const params = new URLSearchParams(location.hash.slice(1));
  const code = params.get('code') ?? undefined;
  const error = params.get('error') ?? undefined;
  if (code || error) history.replaceState(null, '', location.pathname + location.search);
  return { code, error };
}

export function SocialSignIn() {
  const [providers, setProviders] = useState<Schemas['ProviderView'][]>([]);
  const [code, setCode] = useState<string | null>(null);
  const [totp, setTotp] = useState('');
  const action = useAction();

  useEffect(() => {
    api.GET('/v1/auth/oauth/providers').then(({ data }) => setProviders(data ?? []), () => undefined);
    const back = takeFragment();
    if (back.error) action.setProblem(problem('Sign-in with the provider failed', ERRORS[back.error] ?? back.error, back.error));
    if (back.code) void exchange(back.code);
  }, []);

  async function exchange(loginCode: string, totpCode?: string) {
    const result = await action.run(() => exchangeLoginCode(loginCode, totpCode));
    if (!result || result.ok) return;
    if (result.problem.code === 'mfa_required') {
      setCode(loginCode);
      setTotp('');
      // The first answer asks for the code; a later one says it was wrong.
      action.setProblem(totpCode ? problem('Wrong code', 'That code is wrong or expired; enter the current one.', 'mfa_required') : null);
    } else {
      setCode(null);
      action.setProblem(result.problem);
    }
  }

  const back = `${location.origin}${BASE}/`;
  return (
    <section class="social" aria-label="Sign in with a provider">
      {code ? (
        <form
          aria-label="Authentication code"
          noValidate
          onSubmit={(e) => {
            e.preventDefault();
            void exchange(code, totp);
          }}
        >
          <Field label="Authentication code" name="totp_code" problem={action.problem} hint="The 6 digits from your authenticator app, or a recovery code.">
            {(a) => <input {...a} inputMode="numeric" autocomplete="one-time-code" required value={totp} onInput={(e) => setTotp(e.currentTarget.value.trim())} />}
          </Field>
          <button type="submit" class="primary" disabled={action.busy}>
            {action.busy ? 'Signing in…' : 'Continue'}
          </button>
        </form>
      ) : (
        providers.map((p) => (
          <a key={p.id} class="button" href={`/v1/auth/oauth/${encodeURIComponent(p.id)}/authorize?redirect_to=${encodeURIComponent(back)}`}>
            Continue with {p.name}
          </a>
        ))
      )}
      <ProblemAlert problem={action.problem} fields={code ? ['totp_code'] : []} />
    </section>
  );
}
