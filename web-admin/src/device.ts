// Device sign-in (docs/sign-in.md): the password is stretched and the
// OpenPGP key unlocked here, in the browser; the server receives neither.
// OPAQUE runs in @serenity-kit/opaque (WebAssembly), the key-encryption key
// is HKDF-SHA-256 of OPAQUE's export key and the key is sealed with
// AES-256-GCM, all through WebCrypto. An account made before device sign-in
// moves on its first sign-in here: the password grant once, the
// password-locked key unlocked here (OpenPGP.js), registered, locked again.
import type * as Opaque from "@serenity-kit/opaque";

/** OPAQUE in WebAssembly, loaded with the first sign-in (it is most of the app's weight). */
async function loadOpaque(): Promise<typeof Opaque> {
  const opaque = await import("@serenity-kit/opaque");
  await opaque.ready;
  return opaque;
}

const WRAP_PREFIX = "caliop-key-v1:";
const encoder = new TextEncoder();

export interface Ksf {
  iterations: number;
  memory_kib: number;
  parallelism: number;
}

/** What a sign-in answers: the token, and (kept in memory only) the export key. */
export interface DeviceSession {
  access_token: string;
  expires_in: number;
  role: string;
  tenant_id: string;
  account_id?: string | null;
}

export interface SecondFactor {
  totp_code?: string;
  recovery_code?: string;
  /** Answer with a passkey of this browser's (the sign-in's WebAuthn request). */
  passkey?: true;
}

export class Refused extends Error {
  constructor(
    readonly status: number,
    readonly problem: { detail?: string; status?: number; [k: string]: unknown },
  ) {
    super(problem.detail ?? `${status}`);
  }
}

/** The export key of the signed-in account, in memory for this tab only. */
let exportKey: string | null = null;

export function forgetExportKey(): void {
  exportKey = null;
}

async function post(path: string, body: unknown, token?: string): Promise<{ status: number; json: any }> {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(new URL(path, location.origin), { method: "POST", headers, body: JSON.stringify(body) });
  const text = await response.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { detail: text };
  }
  return { status: response.status, json };
}

async function getText(path: string, token: string): Promise<string> {
  const response = await fetch(new URL(path, location.origin), { headers: { Authorization: `Bearer ${token}` } });
  const text = await response.text();
  if (!response.ok) {
    let detail = text;
    try {
      detail = JSON.parse(text).detail ?? text;
    } catch {
      // not JSON
    }
    throw new Refused(response.status, { detail, status: response.status });
  }
  return text;
}

function stretching(ksf: Ksf): Opaque.client.FinishLoginParams["keyStretching"] {
  return { "argon2id-custom": { iterations: ksf.iterations, memory: ksf.memory_kib, parallelism: ksf.parallelism } };
}

function fromBase64Url(text: string): Uint8Array {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function keyEncryptionKey(exportKeyB64: string): Promise<CryptoKey> {
  const ikm = await crypto.subtle.importKey("raw", fromBase64Url(exportKeyB64) as BufferSource, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: encoder.encode("caliop/key-wrap/v1"), info: encoder.encode("caliop secret key") },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** Locks an armored secret key with the export key (`caliop-key-v1:`). */
export async function wrapKey(exportKeyB64: string, armored: string): Promise<string> {
  const nonce = crypto.getRandomValues(new Uint8Array(12));
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv: nonce, additionalData: encoder.encode("caliop-key-v1") },
    await keyEncryptionKey(exportKeyB64),
    encoder.encode(armored),
  );
  const blob = new Uint8Array(12 + sealed.byteLength);
  blob.set(nonce, 0);
  blob.set(new Uint8Array(sealed), 12);
  return WRAP_PREFIX + toBase64Url(blob);
}

/** Opens what `wrapKey` locked. */
export async function unwrapKey(exportKeyB64: string, wrapped: string): Promise<string> {
  if (!wrapped.startsWith(WRAP_PREFIX)) throw new Error("not a key locked on the device");
  const blob = fromBase64Url(wrapped.slice(WRAP_PREFIX.length));
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: blob.slice(0, 12), additionalData: encoder.encode("caliop-key-v1") },
    await keyEncryptionKey(exportKeyB64),
    blob.slice(12),
  );
  return new TextDecoder().decode(plain);
}

/** The first half of a sign-in, finished here: the proof, and the export key. */
async function prove(username: string, password: string): Promise<{ status: number; json: any; finish?: { login_id: string; credential_finalization: string }; exportKey?: string }> {
  const opaque = await loadOpaque();
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const started = await post("/v1/auth/opaque/login/start", { username, credential_request: startLoginRequest });
  if (started.status !== 200) return started;
  const finished = opaque.client.finishLogin({
    clientLoginState,
    loginResponse: started.json.credential_response,
    password,
    keyStretching: stretching(started.json.ksf),
  });
  if (!finished) throw new Refused(401, { status: 401, detail: "wrong address or password" });
  return {
    ...started,
    finish: { login_id: started.json.login_id, credential_finalization: finished.finishLoginRequest },
    exportKey: finished.exportKey,
  };
}

type Current = { current_password: string } | { current_password_proof: { login_id: string; credential_finalization: string } };

async function register(token: string, accountId: string, password: string, armored: string, current: Current): Promise<void> {
  await registerAt(`/v1/accounts/${accountId}/opaque/register`, token, password, armored, current);
}

/** OPAQUE registration at `${base}/start` and `/finish`, with `armored` locked by the new export key. */
async function registerAt(base: string, token: string | undefined, password: string, armored: string, extra: object): Promise<void> {
  const opaque = await loadOpaque();
  const { clientRegistrationState, registrationRequest } = opaque.client.startRegistration({ password });
  const started = await post(`${base}/start`, { registration_request: registrationRequest }, token);
  if (started.status !== 200) throw new Refused(started.status, started.json);
  const ksf: Ksf = started.json.ksf;
  const finished = opaque.client.finishRegistration({
    clientRegistrationState,
    registrationResponse: started.json.registration_response,
    password,
    keyStretching: stretching(ksf),
  });
  const locked_key = await wrapKey(finished.exportKey, armored);
  const body = { registration_record: finished.registrationRecord, ksf, locked_key, ...extra };
  const done = await post(`${base}/finish`, body, token);
  if (done.status !== 204) throw new Refused(done.status, done.json);
}

/** HKDF-SHA-256 of an activation link's secret (docs/sign-in.md). */
async function fromActivation(secret: Uint8Array, info: string): Promise<Uint8Array> {
  const ikm = await crypto.subtle.importKey("raw", secret as BufferSource, "HKDF", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: encoder.encode("caliop/activation/v1"), info: encoder.encode(info) }, ikm, 256);
  return new Uint8Array(bits);
}

/**
 * Opens an activation link (its secret, after `#`): the account's key is
 * unlocked with the link here, and locked again with `password`'s export
 * key; the server sees neither. Answers the account's address.
 */
export async function activate(linkSecret: string, password: string): Promise<string> {
  if (!globalThis.crypto?.subtle) {
    throw new Refused(0, { status: 0, detail: "activating needs a secure page: open this address with https://" });
  }
  let secret: Uint8Array;
  try {
    secret = fromBase64Url(linkSecret.trim());
  } catch {
    secret = new Uint8Array();
  }
  if (secret.length !== 32) throw new Refused(0, { status: 0, detail: "this link is incomplete: copy it whole, with what follows #" });
  const token = toBase64Url(await fromActivation(secret, "token"));
  const response = await fetch(new URL(`/v1/public/activations/${token}`, location.origin));
  const opened = await response.json();
  if (!response.ok) throw new Refused(response.status, opened);
  const armored = await unwrapKey(toBase64Url(await fromActivation(secret, "key")), opened.locked_key);
  await registerAt(`/v1/public/activations/${token}`, undefined, password, armored, {});
  return opened.address as string;
}

/** The one-time move of an account made before device sign-in. */
async function moveToDevice(username: string, password: string, factor: SecondFactor): Promise<void> {
  const granted = await post("/v1/auth/token", { grant_type: "password", username, password, ...factor });
  if (granted.status !== 200) throw new Refused(granted.status, granted.json);
  const token: string = granted.json.access_token;
  const accountId: string = granted.json.account_id;
  const locked = await getText(`/v1/accounts/${accountId}/secret-key`, token);
  const openpgp = await import("openpgp");
  const privateKey = await openpgp.decryptKey({ privateKey: await openpgp.readPrivateKey({ armoredKey: locked }), passphrase: password });
  // The password once more: the server saw it at the grant just above, and
  // a token alone must not move the account to a password of its own.
  await register(token, accountId, password, privateKey.armor(), { current_password: password });
}

function passkeysHere(options: unknown): void {
  if (!options || !globalThis.PublicKeyCredential?.parseRequestOptionsFromJSON) {
    throw new Refused(0, { status: 0, detail: "passkeys work in a recent browser, on this service's own address over https" });
  }
}

/** The answer of one of this browser's passkeys to the sign-in's WebAuthn request. */
async function passkeyAssertion(options: unknown): Promise<unknown> {
  passkeysHere(options);
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(options as PublicKeyCredentialRequestOptionsJSON);
  const credential = (await navigator.credentials.get({ publicKey })) as PublicKeyCredential | null;
  if (!credential) throw new Refused(0, { status: 0, detail: "no passkey was chosen" });
  return credential.toJSON();
}

export interface PasskeyAdded {
  passkey: { id: string; name: string; rp_id: string };
  recovery_codes: string[];
}

/** Makes a passkey on this browser's authenticator and registers it (named `name`). */
export async function addPasskey(token: string, accountId: string, name: string): Promise<PasskeyAdded> {
  const started = await post(`/v1/accounts/${accountId}/passkeys/register/start`, {}, token);
  if (started.status !== 200) throw new Refused(started.status, started.json);
  passkeysHere(started.json.options);
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(started.json.options as PublicKeyCredentialCreationOptionsJSON);
  const credential = (await navigator.credentials.create({ publicKey })) as PublicKeyCredential | null;
  if (!credential) throw new Refused(0, { status: 0, detail: "no passkey was made" });
  const done = await post(`/v1/accounts/${accountId}/passkeys/register/finish`, { name, credential: credential.toJSON() }, token);
  if (done.status !== 201) throw new Refused(done.status, done.json);
  return done.json as PasskeyAdded;
}

/** Signs in on this device; a second factor goes along when asked for. */
export async function deviceSignIn(username: string, password: string, factor: SecondFactor = {}): Promise<DeviceSession> {
  if (!globalThis.crypto?.subtle) {
    throw new Refused(0, { status: 0, detail: "signing in needs a secure page: open this address with https://" });
  }
  for (let round = 0; round < 2; round++) {
    const proven = await prove(username, password);
    if (proven.status === 409) {
      await moveToDevice(username, password, factor);
      continue;
    }
    if (!proven.finish) throw new Refused(proven.status, proven.json);
    const { passkey, ...codes } = factor;
    const answer = passkey ? { passkey: await passkeyAssertion(proven.json.passkey) } : {};
    const done = await post("/v1/auth/opaque/login/finish", { ...proven.finish, ...codes, ...answer });
    if (done.status !== 200) throw new Refused(done.status, done.json);
    exportKey = proven.exportKey ?? null;
    return done.json as DeviceSession;
  }
  throw new Error("the account did not move to device sign-in");
}

/** A proof of the current password for a request that asks for one. */
export async function currentPasswordProof(username: string, password: string): Promise<{ login_id: string; credential_finalization: string }> {
  const proven = await prove(username, password);
  if (!proven.finish) throw new Refused(proven.status, proven.json);
  return proven.finish;
}

/** A new password: the key is unlocked with the current one and locked with the new one, here. */
export async function changePassword(token: string, accountId: string, username: string, current: string, next: string): Promise<void> {
  const proven = await prove(username, current);
  if (!proven.finish || !proven.exportKey) throw new Refused(proven.status, proven.json);
  const locked = await getText(`/v1/accounts/${accountId}/secret-key`, token);
  const armored = await unwrapKey(proven.exportKey, locked);
  await register(token, accountId, next, armored, { current_password_proof: proven.finish });
}

/**
 * A key of this device's own for `purpose` (an AES-GCM key, HKDF of the
 * export key with its own label), or null when nothing is unlocked: what the
 * users' app keeps in the browser (its search index) is encrypted with it,
 * so it opens only after the password has been typed in this tab.
 */
export async function deviceKey(purpose: string): Promise<CryptoKey | null> {
  if (!exportKey) return null;
  const ikm = await crypto.subtle.importKey("raw", fromBase64Url(exportKey) as BufferSource, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: encoder.encode("caliop/device-store/v1"), info: encoder.encode(purpose) },
    ikm,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

/** The account's secret key, unlocked here, for GnuPG or Thunderbird. */
export async function unlockedKey(token: string, accountId: string): Promise<string> {
  if (!exportKey) throw new Refused(401, { status: 401, detail: "sign in again to unlock your key" });
  const locked = await getText(`/v1/accounts/${accountId}/secret-key`, token);
  return unwrapKey(exportKey, locked);
}
