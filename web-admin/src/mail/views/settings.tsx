// The person's own account: how private their mail is (the levels at or
// above the tenant's floor only), the recovery address, the storage bar,
// the key's fingerprint and export, the password, and app passwords for
// mail clients with the IMAP and SMTP settings autoconfig publishes.
import { useEffect, useMemo, useState } from "preact/hooks";
import { type Schemas, type Session, api, call, setSession } from "../../api";
import { KeyExport, PasswordChange, SecondFactor, asProblem } from "../../credentials";
import { MailRules, accountRules } from "../../views/filters";
import { type Key, formatBytes, formatDate, t } from "../../i18n";
import { CopyButton, Dialog, ErrorBox, Field, FormError, PageHeader, QuotaBar, Submit, useForm, useLoad } from "../../ui";
import { emailAddress } from "../../validate";
import { QrCode } from "../qr";

type Level = Schemas["Level"];
const LEVELS: Level[] = ["standard", "sealed", "dispersed", "end-to-end"];

export function Settings({ session, accountId }: { session: Session; accountId: string }) {
  const account = useLoad(() => call(api.GET("/v1/accounts/{account_id}", { params: { path: { account_id: accountId } } })), [accountId]);
  // One store per account: it remembers the name of the script it loaded.
  const rules = useMemo(() => accountRules(accountId), [accountId]);
  return (
    <section class="settings">
      <PageHeader title={t("mail.settings")} />
      {account.error && <ErrorBox problem={account.error} retry={account.reload} />}
      {account.data && (
        <>
          <Storage account={account.data} />
          <LevelChoice account={account.data} onSaved={account.reload} />
          <RecoveryAddress account={account.data} onSaved={account.reload} />
          <KeyExport session={session} accountId={accountId}>
            <p>
              {t("settings.fingerprint")} <code data-testid="fingerprint">{account.data.fingerprint}</code>
            </p>
          </KeyExport>
        </>
      )}
      <MailRules store={rules} />
      <PasswordChange session={session} accountId={accountId} />
      <AppPasswords accountId={accountId} address={session.username} />
      <SecondFactor accountId={accountId} />
      <OtherSessions session={session} accountId={accountId} />
    </section>
  );
}

/** Signs out every other browser and mail app signed in with the password; this one carries on. */
function OtherSessions({ session, accountId }: { session: Session; accountId: string }) {
  const [state, setState] = useState<{ busy: boolean; done: boolean; error: string | null }>({ busy: false, done: false, error: null });
  const end = async () => {
    setState({ busy: true, done: false, error: null });
    try {
      const fresh = await call(api.POST("/v1/accounts/{account_id}/sessions/end-others", { params: { path: { account_id: accountId } } }));
      // Tokens issued before are void now, this tab's too: it goes on with the fresh one.
      setSession({ ...session, token: fresh.access_token, expiresAt: Date.now() + fresh.expires_in * 1000 });
      setState({ busy: false, done: true, error: null });
    } catch (e) {
      setState({ busy: false, done: false, error: asProblem(e).detail });
    }
  };
  return (
    <div class="card">
      <h2>{t("settings.sessions")}</h2>
      <p>{t("settings.sessions_body")}</p>
      <button type="button" class="danger" disabled={state.busy} onClick={end}>{state.busy ? t("common.working") : t("settings.sessions_end")}</button>
      {state.done && <p role="status">{t("settings.sessions_ended")}</p>}
      {state.error && <p class="error" role="alert">{state.error}</p>}
    </div>
  );
}

function Storage({ account }: { account: Schemas["AccountView"] }) {
  const quota = account.storage_quota_bytes ?? null;
  return (
    <div class="card">
      <h2>{t("settings.storage")}</h2>
      <p>
        {quota
          ? t("settings.storage_of", { used: formatBytes(account.storage_used_bytes), total: formatBytes(quota) })
          : t("settings.storage_used", { used: formatBytes(account.storage_used_bytes) })}
      </p>
      {quota ? <QuotaBar used={account.storage_used_bytes} total={quota} label={t("settings.storage")} /> : <p class="small">{t("settings.storage_shared")}</p>}
    </div>
  );
}

function LevelChoice({ account, onSaved }: { account: Schemas["AccountView"]; onSaved: () => void }) {
  const [level, setLevel] = useState<Level>(account.level);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  // Levels below the tenant's floor are not offered: the server would refuse them.
  const floor: Level = account.level_floor ?? "standard";
  const offered = LEVELS.slice(LEVELS.indexOf(floor));
  const save = async (event: Event) => {
    event.preventDefault();
    setError(null);
    setSaved(false);
    setBusy(true);
    try {
      await call(api.PATCH("/v1/accounts/{account_id}", { params: { path: { account_id: account.id } }, body: { level } }));
      setSaved(true);
      onSaved();
    } catch (e) {
      setError(asProblem(e).detail);
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card" onSubmit={save} aria-labelledby="level-title">
      <h2 id="level-title">{t("settings.level")}</h2>
      <p>{t("settings.level_body")}</p>
      <fieldset class="levels">
        <legend class="visually-hidden">{t("settings.level")}</legend>
        {offered.map((l) => (
          <label class="choice" key={l}>
            <input type="radio" name="level" value={l} checked={level === l} onChange={() => setLevel(l)} />
            <span>
              <span class="strong">{t(`level.${l}` as Key)}</span>
              <span class="hint block">{t(`level.${l}.what` as Key)}</span>
            </span>
          </label>
        ))}
      </fieldset>
      {floor !== "standard" && <p class="small" data-testid="level-floor">{t("settings.level_floor", { level: t(`level.${floor}` as Key) })}</p>}
      {error && <p class="form-error" role="alert">{error}</p>}
      {saved && <p role="status">{t("common.saved")}</p>}
      <button type="submit" class="primary" disabled={busy || level === account.level}>{t("common.save")}</button>
    </form>
  );
}

/** Where password resets and the welcome mail go: another address of the person's, or none. */
function RecoveryAddress({ account, onSaved }: { account: Schemas["AccountView"]; onSaved: () => void }) {
  const current = account.recovery_address ?? "";
  const [status, setStatus] = useState<string | null>(null);
  const form = useForm(
    { recovery_address: current },
    {
      recovery_address: (v) => {
        const address = v.trim();
        if (!address) return null;
        if (address.toLowerCase() === account.address.toLowerCase()) return t("settings.recovery_same");
        return emailAddress(address);
      },
    },
  );
  useEffect(() => form.setValues({ recovery_address: current }), [current]);
  const save = async (recovery_address: string) => {
    setStatus(null);
    await call(api.PATCH("/v1/accounts/{account_id}", { params: { path: { account_id: account.id } }, body: { recovery_address } }));
    setStatus(recovery_address ? t("settings.recovery_saved", { address: recovery_address }) : t("settings.recovery_cleared"));
    onSaved();
  };
  const submit = form.submit((v) => save(v.recovery_address.trim()), { recovery_address: ["recovery_address"] });
  return (
    <form class="card" noValidate onSubmit={submit} aria-labelledby="recovery-title">
      <h2 id="recovery-title">{t("settings.recovery")}</h2>
      <p>{t("settings.recovery_body")}</p>
      <p data-testid="recovery-current">{current ? t("settings.recovery_is", { address: current }) : t("settings.recovery_none")}</p>
      <Field {...form.field("recovery_address")} type="email" label={t("settings.recovery_label")} autoComplete="email" inputMode="email" />
      <FormError message={form.formError} />
      {status && <p role="status">{status}</p>}
      <div class="buttons">
        <Submit busy={form.busy} label={t("common.save")} />
        {current && (
          <button type="button" disabled={form.busy} onClick={form.submit(() => save(""))}>{t("settings.recovery_clear")}</button>
        )}
      </div>
    </form>
  );
}

interface ClientSettings {
  imap: { host: string; port: string; socket: string };
  smtp: { host: string; port: string; socket: string };
}

/**
 * What the QR code for phones holds: the settings as plain text, which any
 * phone's camera shows and a person copies into their mail app (phones do
 * not read Mozilla autoconfig from a QR code). The app password is not in it.
 */
export function phoneSettings(settings: ClientSettings, address: string): string {
  return [
    `IMAP: ${settings.imap.host} port ${settings.imap.port} ${settings.imap.socket}`,
    `SMTP: ${settings.smtp.host} port ${settings.smtp.port} ${settings.smtp.socket}`,
    `User: ${address}`,
  ].join("\n");
}

/** The IMAP and SMTP settings the server publishes for mail clients (Mozilla autoconfig). */
async function clientSettings(address: string): Promise<ClientSettings | null> {
  const response = await fetch(`/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(address)}`);
  if (!response.ok) return null;
  const xml = new DOMParser().parseFromString(await response.text(), "application/xml");
  const server = (type: string) => {
    const node = xml.querySelector(`${type === "imap" ? "incomingServer" : "outgoingServer"}[type="${type}"]`);
    return { host: node?.querySelector("hostname")?.textContent ?? "", port: node?.querySelector("port")?.textContent ?? "", socket: node?.querySelector("socketType")?.textContent ?? "" };
  };
  return { imap: server("imap"), smtp: server("smtp") };
}

function AppPasswords({ accountId, address }: { accountId: string; address: string }) {
  const list = useLoad(() => call(api.GET("/v1/accounts/{account_id}/app-passwords", { params: { path: { account_id: accountId } } })), [accountId]);
  const [settings, setSettings] = useState<ClientSettings | null>(null);
  const [secret, setSecret] = useState<{ name: string; secret: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const form = useForm({ app_name: "" }, { app_name: (v) => (v.trim() ? null : t("settings.app_name_required")) });
  useEffect(() => {
    clientSettings(address).then(setSettings, () => setSettings(null));
  }, [address]);
  const create = form.submit(
    async (v) => {
      const made = await call(api.POST("/v1/accounts/{account_id}/app-passwords", { params: { path: { account_id: accountId } }, body: { name: v.app_name.trim() } }));
      setSecret({ name: made.app_password.name, secret: made.secret });
      form.setValues({ app_name: "" });
      list.reload();
    },
    { app_name: ["name"] },
  );
  const revoke = async (id: string) => {
    setError(null);
    try {
      await call(api.DELETE("/v1/accounts/{account_id}/app-passwords/{app_password_id}", { params: { path: { account_id: accountId, app_password_id: id } } }));
      list.reload();
    } catch (e) {
      setError(asProblem(e).detail);
    }
  };
  return (
    <div class="card">
      <h2>{t("settings.apps")}</h2>
      <p>{t("settings.apps_body")}</p>
      {settings && (
        <dl class="client-settings" data-testid="client-settings">
          <dt>{t("settings.imap")}</dt>
          <dd><code>{settings.imap.host}</code>, {t("settings.port", { port: settings.imap.port, security: settings.imap.socket })}</dd>
          <dt>{t("settings.smtp")}</dt>
          <dd><code>{settings.smtp.host}</code>, {t("settings.port", { port: settings.smtp.port, security: settings.smtp.socket })}</dd>
          <dt>{t("settings.username")}</dt>
          <dd><code>{address}</code></dd>
        </dl>
      )}
      {settings && (
        <figure class="phone-setup">
          <QrCode text={phoneSettings(settings, address)} label={t("settings.qr_label")} />
          <figcaption class="small">{t("settings.qr_caption")}</figcaption>
        </figure>
      )}
      <p class="small">{t("settings.autoconfig")}</p>
      {list.error && <ErrorBox problem={list.error} retry={list.reload} />}
      {list.data && list.data.items.length > 0 && (
        <ul class="app-passwords">
          {list.data.items.map((p) => (
            <li key={p.id}>
              <span class="strong">{p.name}</span>{" "}
              <span class="small">{p.last_used_at ? t("settings.app_used", { date: formatDate(p.last_used_at, true) }) : t("keys.never")}</span>{" "}
              <button type="button" class="danger" onClick={() => revoke(p.id)} aria-label={t("settings.app_revoke_named", { name: p.name })}>{t("keys.revoke")}</button>
            </li>
          ))}
        </ul>
      )}
      {error && <p class="form-error" role="alert">{error}</p>}
      <form noValidate onSubmit={create} class="inline-form">
        <Field {...form.field("app_name")} label={t("settings.app_name")} placeholder={t("settings.app_name_placeholder")} autoComplete="off" />
        <Submit busy={form.busy} label={t("settings.app_create")} />
        <FormError message={form.formError} />
      </form>
      {secret && (
        <Dialog title={t("settings.app_shown_once", { name: secret.name })} onClose={() => setSecret(null)}>
          <p class="warning">{t("keys.shown_once")}</p>
          <p class="copyable secret">
            <code data-testid="app-password">{secret.secret}</code>
            <CopyButton text={secret.secret} label={t("settings.apps")} />
          </p>
          <button type="button" class="primary" onClick={() => setSecret(null)}>{t("keys.stored_it")}</button>
        </Dialog>
      )}
    </div>
  );
}
