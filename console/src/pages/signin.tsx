import { useRef, useState } from 'preact/hooks';
import { signIn, signInWithPasskey } from '../client';
import { Field, ProblemAlert, useAction } from '../ui';
import { SocialSignIn } from './social';

/** Email and password, then the authenticator's code when the account has MFA on; or a passkey
 *  (which needs no email and no code: it verifies its user itself). */
export function SignIn() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needsCode, setNeedsCode] = useState(false);
  const action = useAction();
  const codeInput = useRef<HTMLInputElement>(null);

  async function submit(e: Event) {
    e.preventDefault();
    const result = await action.run(() => signIn(email, password, needsCode ? code : undefined));
    if (!result || result.ok) return;
    if (result.problem.code === 'mfa_required') {
      const wrongCode = needsCode;
      setNeedsCode(true);
      setCode('');
      // The first answer asks for the code; a later one says the code was wrong.
      action.setProblem(
        wrongCode
          ? { ...result.problem, errors: [{ field: 'totp_code', code: 'invalid', message: 'That code is wrong or expired; enter the current one.' }] }
          : null,
      );
      queueMicrotask(() => codeInput.current?.focus());
    } else {
      action.setProblem(result.problem);
    }
  }

  async function withPasskey() {
    const result = await action.run(signInWithPasskey);
    if (result && !result.ok) action.setProblem(result.problem);
  }

  return (
    <main id="main" class="narrow signin">
      <h1>Sign in to Keel admin</h1>
      <form onSubmit={submit} aria-label="Sign in" noValidate>
        <Field label="Email" name="email" problem={action.problem}>
          {(a) => <input {...a} type="email" autocomplete="username" required value={email} onInput={(e) => setEmail(e.currentTarget.value)} />}
        </Field>
        <Field label="Password" name="password" problem={action.problem}>
          {(a) => (
            <input {...a} type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
          )}
        </Field>
        {needsCode && (
          <Field label="Authentication code" name="totp_code" problem={action.problem} hint="The 6 digits from your authenticator app, or a recovery code.">
            {(a) => (
              <input
                {...a}
                ref={codeInput}
                inputMode="numeric"
                autocomplete="one-time-code"
                required
                value={code}
                onInput={(e) => setCode(e.currentTarget.value.trim())}
              />
            )}
          </Field>
        )}
        <ProblemAlert problem={action.problem} fields={['email', 'password', 'totp_code']} />
        <button type="submit" class="primary" disabled={action.busy}>
          {action.busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
      <p class="alternative">
        <button type="button" onClick={withPasskey} disabled={action.busy}>
          Sign in with a passkey
        </button>
      </p>
      <SocialSignIn />
    </main>
  );
}
