// The API client, generated from openapi/openapi.json (src/schema.d.ts), and
// the session it signs requests with. A request that meets an expired session
// waits for the user to sign in again, then goes out once more: whatever was
// being typed stays where it was.
import { type SecondFactor, Refused, deviceSignIn, forgetExportKey } from "./device";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type Schemas = components["schemas"];
export type Role = Schemas["Role"];

export interface Session {
  token: string;
  role: Role;
  tenantId: string;
  accountId: string | null;
  username: string;
  expiresAt: number;
}

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail: string;
  found?: string[] | null;
}

// Each app (admin at /admin/, the users' at /) keeps its own session.
const STORAGE_KEY = import.meta.env.BASE_URL === "/" ? "caliop.mail.session" : "caliop.admin.session";

let session: Session | null = loadSession();
const listeners = new Set<() => void>();
let reauth: ((expired: Session) => Promise<Session | null>) | null = null;
let pendingReauth: Promise<Session | null> | null = null;

function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

export function currentSession(): Session | null {
  return session;
}

export function setSession(next: Session | null): void {
  session = next;
  if (!next) forgetExportKey();
  if (next) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(STORAGE_KEY);
  listeners.forEach((l) => l());
}

export function onSessionChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The app registers how to ask for the password again when a token expires. */
export function setReauthHandler(handler: (expired: Session) => Promise<Session | null>): void {
  reauth = handler;
}

async function authorizedFetch(input: Request): Promise<Response> {
  // The body is read once into bytes: the request can go out again after a
  // renewed sign-in, and it leaves as bytes, not as a stream (a cloned
  // Request's body is a stream, which the browser's request log cannot show).
  const body = input.body ? await input.arrayBuffer() : undefined;
  const again = () => new Request(input.url, { method: input.method, headers: input.headers, body, redirect: input.redirect, signal: input.signal });
  const first = await sendWithToken(again());
  if (first.status !== 401 || !session || !reauth || input.url.endsWith("/v1/auth/token")) return first;
  pendingReauth ??= reauth(session).finally(() => {
    pendingReauth = null;
  });
  const renewed = await pendingReauth;
  if (!renewed) return first;
  return sendWithToken(again());
}

function sendWithToken(request: Request): Promise<Response> {
  if (session && !request.url.endsWith("/v1/auth/token")) {
    request.headers.set("Authorization", `Bearer ${session.token}`);
  }
  return fetch(request);
}

export const api = createClient<paths>({ baseUrl: location.origin, fetch: authorizedFetch });

/**
 * Signs in on this device (OPAQUE): the password never leaves the browser.
 * A second factor goes along when the account has one.
 */
export async function signIn(username: string, password: string, factor: SecondFactor = {}): Promise<Session> {
  let data;
  try {
    data = await deviceSignIn(username, password, factor);
  } catch (e) {
    if (e instanceof Refused) throw { ...e.problem, status: e.status, detail: e.problem.detail ?? e.message } satisfies Problem;
    throw { status: 0, detail: e instanceof Error ? e.message : String(e) } satisfies Problem;
  }
  return {
    token: data.access_token,
    role: data.role as Role,
    tenantId: data.tenant_id,
    accountId: data.account_id ?? null,
    username,
    expiresAt: Date.now() + data.expires_in * 1000,
  };
}

/**
 * The second factors a refused sign-in asks for (`totp_code`, `passkey`,
 * `recovery_code`), or null when it asks for none.
 */
export function secondFactorsAsked(problem: Problem): string[] | null {
  return problem.status === 401 && problem.found?.includes("recovery_code") ? problem.found : null;
}

/** Whatever an API call failed with, as problem details. */
export function asProblem(error: unknown, response?: Response): Problem {
  if (error && typeof error === "object" && "detail" in error) {
    const p = error as Problem;
    return { ...p, status: p.status ?? response?.status ?? 0 };
  }
  return {
    status: response?.status ?? 0,
    detail: response ? `${response.status} ${response.statusText}` : String(error),
  };
}

/** Unwraps an openapi-fetch answer: the data, or a thrown Problem. */
export async function call<T>(promise: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result;
  try {
    result = await promise;
  } catch (e) {
    throw { status: 0, detail: e instanceof Error ? e.message : String(e) } satisfies Problem;
  }
  if (result.error !== undefined || !result.response.ok) throw asProblem(result.error, result.response);
  return result.data as T;
}

/** Fetches something the typed client does not model (CSV, images) with the session's token. */
export async function fetchAuthorized(path: string, init: RequestInit = {}): Promise<Response> {
  const response = await authorizedFetch(new Request(new URL(path, location.origin), init));
  if (!response.ok) {
    let problem: Problem = { status: response.status, detail: `${response.status} ${response.statusText}` };
    try {
      problem = { ...(await response.json()), status: response.status };
    } catch {
      /* not problem+json */
    }
    throw problem;
  }
  return response;
}
