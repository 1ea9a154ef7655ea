// Passkeys in the browser: the API's WebAuthn Level 3 JSON options go to the authenticator, its
// credential comes back as JSON. Used by the sign-in page and the "Your passkeys" page.
import type { Problem } from './client';

/** What the browser's authenticator made or signed, as JSON for the API. */
export type CredentialJson = { [key: string]: unknown };

/** A new credential for registration options from `/v1/auth/passkeys/register/start`. */
export async function createPasskey(options: object): Promise<CredentialJson> {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options as PublicKeyCredentialCreationOptionsJSON);
  return toJson(await navigator.credentials.create({ publicKey }));
}

/** An assertion for login options from `/v1/auth/passkeys/login/start`. */
export async function usePasskey(options: object): Promise<CredentialJson> {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options as PublicKeyCredentialRequestOptionsJSON);
  return toJson(await navigator.credentials.get({ publicKey }));
}

function toJson(credential: Credential | null): CredentialJson {
  if (!(credential instanceof PublicKeyCredential)) throw new Error('no passkey was chosen');
  return credential.toJSON() as CredentialJson;
}

/** The problem to show when the browser's side failed (cancelled, no authenticator, timed out). */
export function passkeyProblem(e: unknown): Problem {
  const cancelled = e instanceof DOMException && (e.name === 'NotAllowedError' || e.name === 'AbortError');
  return {
    type: 'about:blank',
    title: cancelled ? 'No passkey used' : 'Passkey failed',
    status: 0,
    detail: cancelled ? 'the passkey prompt was closed or timed out; try again' : e instanceof Error ? e.message : 'the browser could not use a passkey',
    code: 'passkey',
    request_id: '',
  };
}
