import { useState } from "preact/hooks";
import { type Problem, setSession, signIn, wantsSecondFactor } from "../api";
import { type Brand, productName } from "../brand";
import { t } from "../i18n";
import { Field, FormError, Submit, useForm } from "../ui";
import { emailAddress } from "../validate";

/**
 * Sign-in on this device: the password is stretched here and never sent
 * (docs/sign-in.md). An account with a second factor is asked for its code
 * (or a recovery code) after the password.
 */
export function SignIn({ brand }: { brand: Brand | null }) {
  const [askCode, setAskCode] = useState(false);
  const form = useForm(
    { address: "", password: "", code: "" },
    {
      address: emailAddress,
      password: (v) => (v ? null : t("signin.password_required")),
      code: (v) => (!askCode || v.trim() ? null : t("signin.code_required")),
    },
  );
  const name = productName(brand);
  return (
    <section class="signin card">
      <h1 id="page-title" tabIndex={-1}>{name ? t("signin.title_brand", { name }) : t("signin.title")}</h1>
      <form
        noValidate
        onSubmit={form.submit(
          async (v) => {
            const code = v.code.replace(/\s/g, "");
            const factor = !askCode ? {} : /^\d{6}$/.test(code) ? { totp_code: code } : { recovery_code: v.code.trim() };
            try {
              setSession(await signIn(v.address.trim(), v.password, factor));
            } catch (e) {
              if (!askCode && wantsSecondFactor(e as Problem)) {
                setAskCode(true);
                throw { status: 401, detail: t("signin.code_asked") } satisfies Problem;
              }
              throw e;
            }
          },
          { address: ["username"], code: ["totp_code", "recovery_code"] },
        )}
      >
        <Field {...form.field("address")} label={t("signin.address")} type="email" autoComplete="username" inputMode="email" required />
        <Field {...form.field("password")} label={t("signin.password")} type="password" autoComplete="current-password" required />
        {askCode && (
          <Field {...form.field("code")} label={t("signin.code")} hint={t("signin.code_hint")} autoComplete="one-time-code" inputMode="numeric" required />
        )}
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("signin.submit")} />
      </form>
    </section>
  );
}
