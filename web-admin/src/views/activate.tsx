// An activation link's page (`/admin/activate#SECRET`): the person an
// administrator made an account for sets its password here. The account's
// key is unlocked with the link's secret and locked again with the new
// password in this browser; the server receives neither (docs/sign-in.md).
import { useState } from "preact/hooks";
import type { Problem } from "../api";
import { Refused, activate } from "../device";
import { t } from "../i18n";
import { navigate } from "../router";
import { Field, FormError, Submit, useForm } from "../ui";
import { password as passwordCheck } from "../validate";

export function Activate() {
  const [done, setDone] = useState<string | null>(null);
  const form = useForm({ new_password: "", new_password_again: "" }, { new_password: passwordCheck });
  const submit = form.submit(async (v) => {
    if (v.new_password !== v.new_password_again) throw { status: 422, detail: t("account.mismatch") } satisfies Problem;
    try {
      const address = await activate(location.hash.slice(1), v.new_password);
      // The link is spent: it leaves the address bar and the history.
      history.replaceState(null, "", location.pathname);
      setDone(address);
    } catch (e) {
      if (e instanceof Refused) throw { status: e.status, detail: e.problem.detail ?? e.message } satisfies Problem;
      throw e;
    }
  });
  return (
    <section class="signin card">
      <h1 id="page-title" tabIndex={-1}>{t("activate.title")}</h1>
      {done ? (
        <>
          <p role="status">{t("activate.done", { address: done })}</p>
          <button type="button" class="primary" onClick={() => navigate("/")}>
            {t("activate.sign_in")}
          </button>
        </>
      ) : (
        <form noValidate onSubmit={submit}>
          <p>{t("activate.body")}</p>
          <Field {...form.field("new_password")} label={t("account.new")} type="password" autoComplete="new-password" hint={t("password.hint")} required />
          <Field {...form.field("new_password_again")} label={t("account.again")} type="password" autoComplete="new-password" required />
          <FormError message={form.formError} />
          <Submit busy={form.busy} label={t("activate.submit")} />
        </form>
      )}
    </section>
  );
}
