// Signing up for a free account (or, on a tenant's hostname with
// self-signup, an account of that tenant): an address, a password with its
// strength shown, a proof of work solved in a Web Worker with its progress
// and an estimate, then the open account or a place in the waiting line,
// which this page follows until the account opens.
//
// The signup request carries no password: the server answers an activation
// link, and once the account is open this page sets the password with it on
// the device (OPAQUE registration, the key unlocked with the link's secret
// and locked again with the password's export key, as src/device.ts does for
// every activation link). The link's secret and the password stay in this
// tab's memory while the page waits; the person keeps the link in case the
// tab closes, and opens it at /activate once admitted.
import { useEffect, useRef, useState } from "preact/hooks";
import { type Problem, type Schemas, api, asProblem, call, setSession, signIn } from "../../api";
import { Refused, activate } from "../../device";
import type { Brand } from "../../brand";
import { productName } from "../../brand";
import { formatDate, formatNumber, t } from "../../i18n";
import { Field, FormError, Submit, useForm } from "../../ui";
import { PASSWORD_MIN, emailAddress, localPart } from "../../validate";
import { type PowProgress, type PowRequest, expectedAttempts } from "../pow";
import { strength } from "../strength";

type Challenge = Schemas["Challenge"];

/** A signup of this tab, until its account is open and its password set. */
interface Pending {
  token: string;
  address: string;
  /** The activation link as the server gave it (shown so the person can keep it). */
  link: string;
  /** What follows `#` in the link: it unlocks the account's key. */
  secret: string;
  password: string;
}

let pending: Pending | null = null;

async function challenge(): Promise<Challenge> {
  return call(api.GET("/v1/public/signup/challenge"));
}

/** Sets the password of an admitted signup on this device, then signs in. */
async function openAccount(signup: Pending): Promise<void> {
  try {
    await activate(signup.secret, signup.password);
  } catch (e) {
    if (e instanceof Refused) throw { status: e.status, detail: e.problem.detail ?? e.message } satisfies Problem;
    throw e;
  }
  pending = null;
  setSession(await signIn(signup.address, signup.password));
}

/** Solves the stamp in a worker; `progress` hears from it about every 20,000 attempts. */
function solve(request: PowRequest, progress: (p: PowProgress) => void, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("../pow.worker.ts", import.meta.url), { type: "module" });
    signal.addEventListener("abort", () => {
      worker.terminate();
      reject({ status: 0, detail: t("signup.cancelled") } satisfies Problem);
    });
    worker.onmessage = (event: MessageEvent<PowProgress>) => {
      progress(event.data);
      if (event.data.kind === "found") {
        worker.terminate();
        resolve(event.data.counter);
      }
    };
    worker.onerror = (e) => {
      worker.terminate();
      reject({ status: 0, detail: e.message } satisfies Problem);
    };
    worker.postMessage(request);
  });
}

function seconds(n: number): string {
  if (n < 1) return t("signup.eta_moment");
  if (n < 90) return t("signup.eta_seconds", { n: Math.ceil(n) });
  return t("signup.eta_minutes", { n: Math.ceil(n / 60) });
}

function Progress({ tried, perSecond, difficulty }: { tried: number; perSecond: number; difficulty: number }) {
  const expected = expectedAttempts(difficulty);
  // The search is a lottery: past the expected count, the bar waits near its end.
  const ratio = Math.min(0.97, tried / expected);
  const remaining = perSecond > 0 ? Math.max(0, (expected - tried) / perSecond) : null;
  return (
    <div class="pow" data-testid="pow">
      <p id="pow-label">{t("signup.working")}</p>
      <div class="quota">
        <div class="bar good" role="progressbar" aria-labelledby="pow-label" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(ratio * 100)}>
          <span style={{ width: `${(ratio * 100).toFixed(1)}%` }} />
        </div>
      </div>
      <p class="small" aria-live="polite">
        {remaining === null ? t("signup.eta_measuring") : tried >= expected ? t("signup.eta_soon") : t("signup.eta", { time: seconds(remaining) })}
      </p>
    </div>
  );
}

export function Signup({ brand }: { brand: Brand | null }) {
  const [open, setOpen] = useState<Challenge | null | "closed">(null);
  const [solving, setSolving] = useState<{ tried: number; perSecond: number; difficulty: number } | null>(null);
  const [admitted, setAdmitted] = useState<string | null>(null);
  const [stuck, setStuck] = useState<string | null>(null);
  const abort = useRef<AbortController | null>(null);
  const name = productName(brand);
  useEffect(() => {
    challenge().then(setOpen, () => setOpen("closed"));
    return () => abort.current?.abort();
  }, []);
  const domain = open && open !== "closed" ? (open.domain ?? undefined) : undefined;
  const form = useForm(
    { address: "", new_password: "", new_password_again: "", recovery_address: "" },
    {
      address: (v) => (v.includes("@") || !domain ? emailAddress(v.trim()) : localPart(v.trim())),
      recovery_address: (v) => (v.trim() ? emailAddress(v.trim()) : null),
      new_password: (v) => ([...v].length < PASSWORD_MIN ? t("signup.password_short", { n: PASSWORD_MIN }) : null),
    },
  );
  const level = strength(form.values.new_password);

  const submit = form.submit(
    async (v) => {
      if (v.new_password !== v.new_password_again) throw { status: 422, detail: t("account.mismatch") } satisfies Problem;
      const address = v.address.trim().includes("@") || !domain ? v.address.trim() : `${v.address.trim()}@${domain}`;
      const fresh = await challenge();
      abort.current = new AbortController();
      setSolving({ tried: 0, perSecond: 0, difficulty: fresh.difficulty });
      let counter: number;
      try {
        counter = await solve(
          { challenge: fresh.challenge, address, difficulty: fresh.difficulty },
          (p) => setSolving({ tried: p.tried, perSecond: p.kind === "progress" ? p.perSecond : 0, difficulty: fresh.difficulty }),
          abort.current.signal,
        );
      } finally {
        setSolving(null);
      }
      // No password in the request: the answer's link sets it on this device.
      const recovery_address = v.recovery_address.trim() || undefined;
      const response = await api.POST("/v1/public/signup", { body: { address, recovery_address, stamp: { challenge: fresh.challenge, counter } } });
      if (!response.response.ok || !response.data) {
        const problem = asProblem(response.error, response.response);
        if (response.response.status === 429) throw { ...problem, detail: t("signup.rate_limited", { why: problem.detail }) } satisfies Problem;
        throw problem;
      }
      const view = response.data;
      const link = view.activation_url ?? "";
      const secret = link.split("#")[1] ?? "";
      if (!secret) throw { status: 0, detail: t("signup.no_link") } satisfies Problem;
      pending = { token: view.token, address: view.address, link, secret, password: v.new_password };
      if (view.status === "admitted") {
        setAdmitted(view.address);
        try {
          await openAccount(pending);
        } catch (e) {
          // The account is open but its password is not set: the link is the way back.
          setStuck(pending.link);
          throw e;
        }
        return;
      }
      history.pushState(null, "", `/signup/wait#${view.token}`);
      window.dispatchEvent(new PopStateEvent("popstate"));
    },
    { address: ["address"], new_password: ["password"], recovery_address: ["recovery_address"] },
  );

  if (open === "closed") {
    return (
      <section class="signin card">
        <h1 id="page-title" tabIndex={-1}>{t("signup.title")}</h1>
        <p>{t("signup.closed")}</p>
        <p><a href="/">{t("mail.signin")}</a></p>
      </section>
    );
  }
  return (
    <section class="signin card signup">
      <h1 id="page-title" tabIndex={-1}>{name ? t("signup.title_brand", { name }) : t("signup.title")}</h1>
      {admitted ? (
        <>
          <p role="status">{t("signup.admitted_now", { address: admitted })}</p>
          <FormError message={form.formError} />
          {stuck && <KeepLink link={stuck} />}
        </>
      ) : (
        <form noValidate onSubmit={submit}>
          <Field
            {...form.field("address")}
            label={t("signup.address")}
            hint={domain ? t("signup.address_hint_domain", { domain }) : t("signup.address_hint")}
            autoComplete="username"
            inputMode="email"
            required
          />
          {domain && form.values.address.trim() && !form.values.address.includes("@") && (
            <p class="small" data-testid="new-address">{t("signup.address_preview", { address: `${form.values.address.trim()}@${domain}` })}</p>
          )}
          <Field {...form.field("new_password")} type="password" label={t("signin.password")} autoComplete="new-password" hint={t("signup.password_hint", { n: PASSWORD_MIN })} required />
          <p class={`strength ${level}`} data-testid="strength" aria-live="polite">
            <span class="meter" aria-hidden="true"><span /></span>
            {t(`signup.strength_${level}`)}
          </p>
          <Field {...form.field("new_password_again")} type="password" label={t("account.again")} autoComplete="new-password" required />
          <Field {...form.field("recovery_address")} type="email" label={t("signup.recovery")} hint={t("signup.recovery_hint")} autoComplete="email" inputMode="email" />
          {solving && <Progress {...solving} />}
          <FormError message={form.formError} />
          <Submit busy={form.busy} label={t("signup.submit")} />
          {solving && (
            <button type="button" onClick={() => abort.current?.abort()}>{t("common.cancel")}</button>
          )}
        </form>
      )}
      <details class="explain">
        <summary>{t("signup.how_title")}</summary>
        <p>{t("signup.how_work")}</p>
        <p>{t("signup.how_reserved")}</p>
        <p>{t("signup.how_limits")}</p>
        <p>{t("signup.how_line")}</p>
        <p>{t("signup.how_password")}</p>
      </details>
      <p class="signin-more">{t("signup.have_account")} <a href="/">{t("mail.signin")}</a></p>
    </section>
  );
}

const POLL_MS = 5_000;

/** The activation link, shown this once: with it the person sets the password if this tab closes. */
function KeepLink({ link }: { link: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="keep-link" data-testid="keep-link">
      <p>{t("signup.keep_link")}</p>
      <p>
        <code data-testid="activation-link">{link}</code>
      </p>
      <button
        type="button"
        onClick={() =>
          navigator.clipboard?.writeText(link).then(
            () => setCopied(true),
            () => setCopied(false),
          )
        }
      >
        {copied ? t("common.copied") : t("common.copy")}
      </button>
    </div>
  );
}

/** The waiting line: where this signup stands and the pool's state, until the account opens. */
export function SignupWaiting({ onAdmitted }: { onAdmitted: (address: string) => void }) {
  const token = location.hash.slice(1);
  const [status, setStatus] = useState<Schemas["SignupStatus"] | null>(null);
  const [pool, setPool] = useState<Schemas["PoolSummary"] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [signingIn, setSigningIn] = useState(false);
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout>;
    const poll = async () => {
      try {
        const [s, p] = await Promise.all([
          call(api.GET("/v1/public/signup/{token}", { params: { path: { token } } })),
          call(api.GET("/v1/public/pool")),
        ]);
        if (!live) return;
        setStatus(s);
        setPool(p);
        setError(null);
        if (s.status === "admitted") {
          onAdmitted(s.address);
          return;
        }
      } catch (e) {
        if (live) setError(asProblem(e).detail);
      }
      if (live) timer = setTimeout(poll, POLL_MS);
    };
    void poll();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [token]);

  const mine = pending?.token === token ? pending : null;
  const openMailbox = async () => {
    if (!mine) return;
    setSigningIn(true);
    try {
      await openAccount(mine);
    } catch (e) {
      setError(asProblem(e).detail);
    } finally {
      setSigningIn(false);
    }
  };

  return (
    <section class="signin card waiting">
      <h1 id="page-title" tabIndex={-1}>{status?.status === "admitted" ? t("signup.open_title") : t("signup.wait_title")}</h1>
      {!token && <p class="form-error" role="alert">{t("signup.no_token")}</p>}
      {error && <p class="form-error" role="alert">{error}</p>}
      {status && status.status !== "admitted" && (
        <>
          <p class="big-number" data-testid="position">{t("signup.position", { position: formatNumber(status.position ?? 0) })}</p>
          <p>{t("signup.wait_body", { address: status.address, date: formatDate(status.joined_at, true) })}</p>
          <p class="small" aria-live="polite">{t("signup.wait_live")}</p>
          {mine ? <KeepLink link={mine.link} /> : <p class="small">{t("signup.keep_link_lost")}</p>}
        </>
      )}
      {status?.status === "admitted" && (
        <div role="status" data-testid="admitted">
          <p>{t("signup.admitted", { address: status.address })}</p>
          {mine ? (
            <button type="button" class="primary" disabled={signingIn} onClick={openMailbox}>
              {signingIn ? t("common.working") : t("signup.open_mailbox")}
            </button>
          ) : (
            <p>{t("signup.open_with_link")}</p>
          )}
        </div>
      )}
      {pool && (
        <div class="pool" data-testid="pool">
          <h2>{t("signup.pool_title")}</h2>
          <dl>
            <dt>{t("signup.pool_funded")}</dt>
            <dd>{formatNumber(pool.funded_capacity)}</dd>
            <dt>{t("signup.pool_open")}</dt>
            <dd>{formatNumber(pool.active_free_accounts)}</dd>
            <dt>{t("signup.pool_waiting")}</dt>
            <dd>{formatNumber(pool.waiting)}</dd>
            <dt>{t("signup.pool_funders")}</dt>
            <dd>{formatNumber(pool.funding_tenants)}</dd>
          </dl>
          <p class="small">{t("signup.pool_explain", { months: pool.horizon_months })}</p>
          {pool.named_funders.length > 0 && <p class="small">{t("signup.pool_named", { names: pool.named_funders.join(", ") })}</p>}
        </div>
      )}
    </section>
  );
}
