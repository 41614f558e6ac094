// Pieces of the page around both apps' views: the language switch and the
// dialog that asks for the password again when a session ran out.
import { type Session, setSession, signIn } from "./api";
import { type Language, setLanguage, t, useLanguage } from "./i18n";
import { Dialog, Field, FormError, Submit, useForm } from "./ui";
import { password as passwordCheck } from "./validate";

export function LanguageSwitch() {
  const language = useLanguage();
  const other: Language = language === "en" ? "fr" : "en";
  return (
    <button type="button" class="link" lang={other} onClick={() => setLanguage(other)} aria-label={t("lang.switch")}>
      {other === "fr" ? "Français" : "English"}
    </button>
  );
}

/** Asks for the password again when the session ran out; the page underneath keeps its state. */
export function Reauth({ expired, done }: { expired: Session; done: (s: Session | null) => void }) {
  const form = useForm({ reauth_password: "" }, { reauth_password: passwordCheck });
  return (
    <Dialog title={t("reauth.title")}>
      <p>{t("reauth.body", { address: expired.username })}</p>
      <form
        onSubmit={form.submit(async (v) => {
          const renewed = await signIn(expired.username, v.reauth_password);
          setSession(renewed);
          done(renewed);
        })}
      >
        <Field {...form.field("reauth_password")} type="password" label={t("signin.password")} autoComplete="current-password" />
        <FormError message={form.formError} />
        <div class="buttons">
          <Submit busy={form.busy} label={t("reauth.continue")} />
          <button type="button" onClick={() => { setSession(null); done(null); }}>{t("nav.signout")}</button>
        </div>
      </form>
    </Dialog>
  );
}
