// What a signed-in person does with their own credentials, in the admin
// app's account page and the users' app's settings alike: a new password
// (the key is unlocked with the current one and locked with the new one in
// this browser, never on the server), a second factor, passkeys, and the
// secret key, unlocked here, for GnuPG or Thunderbird.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { type Problem, type Session, api, call, setSession, signIn } from "./api";
import { Refused, addPasskey, changePassword, unlockedKey } from "./device";
import { t } from "./i18n";
import { CopyButton, Field, FormError, Submit, useForm } from "./ui";
import { password as passwordCheck } from "./validate";

export function asProblem(e: unknown): Problem {
  if (e instanceof Refused) return { status: e.status, detail: e.problem.detail ?? e.message };
  if (e && typeof e === "object" && "detail" in e) return e as Problem;
  return { status: 0, detail: e instanceof Error ? e.message : String(e) };
}

/** A new password: every session of the account ends with it, so this one signs in again. */
export function PasswordChange({ session, accountId }: { session: Session; accountId: string }) {
  const [changed, setChanged] = useState(false);
  const form = useForm(
    { current_password: "", new_password: "", new_password_again: "" },
    {
      current_password: (v) => (v ? null : t("signin.password_required")),
      new_password: passwordCheck,
    },
  );
  const change = form.submit(async (v) => {
    if (v.new_password !== v.new_password_again) throw { status: 422, detail: t("account.mismatch") } satisfies Problem;
    try {
      await changePassword(session.token, accountId, session.username, v.current_password, v.new_password);
    } catch (e) {
      throw asProblem(e);
    }
    setSession(await signIn(session.username, v.new_password));
    form.setValues({ current_password: "", new_password: "", new_password_again: "" });
    setChanged(true);
  });
  return (
    <div class="card">
      <h2>{t("account.password")}</h2>
      <p>{t("account.password_body")}</p>
      <form noValidate onSubmit={change}>
        <Field {...form.field("current_password")} type="password" label={t("account.current")} autoComplete="current-password" required />
        <Field {...form.field("new_password")} type="password" label={t("account.new")} autoComplete="new-password" required />
        <Field {...form.field("new_password_again")} type="password" label={t("account.again")} autoComplete="new-password" required />
        <FormError message={form.formError} />
        {changed && <p role="status">{t("account.changed")}</p>}
        <Submit busy={form.busy} label={t("account.change")} />
      </form>
    </div>
  );
}

/** The secret key, unlocked in this browser, saved as a file. */
export function KeyExport({ session, accountId, children }: { session: Session; accountId: string; children?: ComponentChildren }) {
  const [keyError, setKeyError] = useState<string | null>(null);
  const download = async () => {
    setKeyError(null);
    try {
      const armored = await unlockedKey(session.token, accountId);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob([armored], { type: "application/pgp-keys" }));
      link.download = `${session.username}.secret.asc`;
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (e) {
      setKeyError(asProblem(e).detail);
    }
  };
  return (
    <div class="card">
      <h2>{t("account.key")}</h2>
      {children}
      <p>{t("account.key_body")}</p>
      <button type="button" onClick={download}>{t("account.download")}</button>
      {keyError && <p class="error" role="alert">{keyError}</p>}
    </div>
  );
}

/** TOTP: a secret to type or open in an authenticator app, a first code, then ten recovery codes shown once. */
export function SecondFactor({ accountId }: { accountId: string }) {
  const [enrolment, setEnrolment] = useState<{ secret: string; otpauth_uri: string } | null>(null);
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const form = useForm({ totp_code: "" }, { totp_code: (v) => (/^\d{6}$/.test(v.replace(/\s/g, "")) ? null : t("signin.code_required")) });
  const start = async () => {
    setError(null);
    setRecovery(null);
    try {
      setEnrolment(await call(api.POST("/v1/accounts/{account_id}/totp", { params: { path: { account_id: accountId } } })));
    } catch (e) {
      setError(asProblem(e).detail);
    }
  };
  const confirm = form.submit(
    async (v) => {
      const done = await call(api.POST("/v1/accounts/{account_id}/totp/confirm", { params: { path: { account_id: accountId } }, body: { code: v.totp_code.replace(/\s/g, "") } }));
      setEnrolment(null);
      setRecovery(done.recovery_codes);
      form.setValues({ totp_code: "" });
    },
    { totp_code: ["code"] },
  );
  return (
    <div class="card">
      <h2>{t("account.second_factor")}</h2>
      <p>{t("account.second_factor_body")}</p>
      {!enrolment && <button type="button" onClick={start}>{t("account.totp_start")}</button>}
      {error && <p class="error" role="alert">{error}</p>}
      {enrolment && (
        <form noValidate onSubmit={confirm}>
          <p>{t("account.totp_secret")}</p>
          <p>
            <code data-testid="totp-secret">{enrolment.secret}</code> <CopyButton text={enrolment.secret} label={t("common.copy")} />
          </p>
          <p>
            <a href={enrolment.otpauth_uri}>{t("account.totp_open")}</a>
          </p>
          <Field {...form.field("totp_code")} label={t("account.totp_code")} autoComplete="one-time-code" inputMode="numeric" required />
          <FormError message={form.formError} />
          <Submit busy={form.busy} label={t("account.totp_confirm")} />
        </form>
      )}
      {recovery && <RecoveryCodes codes={recovery} testId="recovery-codes" />}
    </div>
  );
}

interface PasskeyView {
  id: string;
  name: string;
  rp_id: string;
  created_at: string;
  last_used_at?: string | null;
}

/** Passkeys: made by this browser's authenticator (a security key, the computer's own), asked at sign-in after the password. */
export function Passkeys({ session, accountId }: { session: Session; accountId: string }) {
  const [items, setItems] = useState<PasskeyView[] | null>(null);
  const [recovery, setRecovery] = useState<string[] | null>(null);
  const [added, setAdded] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const form = useForm({ passkey_name: "" }, { passkey_name: (v) => (v.trim() ? null : t("account.passkey_name_required")) });
  const load = async () => {
    try {
      const listed = await call(api.GET("/v1/accounts/{account_id}/passkeys", { params: { path: { account_id: accountId } } }));
      setItems(listed.items);
    } catch (e) {
      setError(asProblem(e).detail);
    }
  };
  useEffect(() => {
    void load();
  }, [accountId]);
  const add = form.submit(
    async (v) => {
      setAdded(null);
      setRecovery(null);
      try {
        const done = await addPasskey(session.token, accountId, v.passkey_name.trim());
        setAdded(done.passkey.name);
        if (done.recovery_codes.length > 0) setRecovery(done.recovery_codes);
        form.setValues({ passkey_name: "" });
      } catch (e) {
        throw asProblem(e);
      }
      await load();
    },
    { passkey_name: ["name"] },
  );
  const remove = async (id: string) => {
    setError(null);
    try {
      await call(api.DELETE("/v1/accounts/{account_id}/passkeys/{passkey_id}", { params: { path: { account_id: accountId, passkey_id: id } } }));
      await load();
    } catch (e) {
      setError(asProblem(e).detail);
    }
  };
  return (
    <div class="card">
      <h2>{t("account.passkeys")}</h2>
      <p>{t("account.passkeys_body")}</p>
      {items && items.length === 0 && <p>{t("account.passkeys_none")}</p>}
      {items && items.length > 0 && (
        <ul data-testid="passkeys">
          {items.map((p) => (
            <li key={p.id}>
              {t("account.passkey_item", { name: p.name, host: p.rp_id })}{" "}
              <button type="button" onClick={() => remove(p.id)} aria-label={t("account.passkey_remove_named", { name: p.name })}>
                {t("account.passkey_remove")}
              </button>
            </li>
          ))}
        </ul>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      <form noValidate onSubmit={add}>
        <Field {...form.field("passkey_name")} label={t("account.passkey_name")} hint={t("account.passkey_name_hint")} required />
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("account.passkey_add")} />
      </form>
      {added && <p role="status">{t("account.passkey_added", { name: added })}</p>}
      {recovery && <RecoveryCodes codes={recovery} testId="passkey-recovery-codes" />}
    </div>
  );
}

/** Recovery codes, shown once, when a first second factor is turned on. */
function RecoveryCodes({ codes, testId }: { codes: string[]; testId: string }) {
  return (
    <div role="status">
      <p>{t("account.recovery_body")}</p>
      <ul data-testid={testId}>
        {codes.map((code) => (
          <li key={code}>
            <code>{code}</code>
          </li>
        ))}
      </ul>
      <CopyButton text={codes.join("\n")} label={t("common.copy")} />
    </div>
  );
}
