import type { ComponentChildren } from "preact";
import { useRef, useState } from "preact/hooks";
import { type Problem, secondFactorsAsked, setSession, signIn } from "../api";
import { type Brand, productName } from "../brand";
import type { SecondFactor } from "../device";
import { t } from "../i18n";
import { Field, FormError, Submit, useForm } from "../ui";
import { emailAddress } from "../validate";

/**
 * Sign-in on this device: the password is stretched here and never sent
 * (docs/sign-in.md). An account with a second factor is asked for it after
 * the password: its authenticator app's code, its passkey, or a recovery
 * code.
 */
export function SignIn({ brand, heading, initialAddress = "", children }: {
  brand: Brand | null;
  /** The page's title; the admin app's by default. */
  heading?: string;
  initialAddress?: string;
  /** Below the form: links to sign up, to reset a password. */
  children?: ComponentChildren;
}) {
  const [factors, setFactors] = useState<string[] | null>(null);
  const viaPasskey = useRef(false);
  const form = useForm(
    { address: initialAddress, password: "", code: "" },
    {
      address: emailAddress,
      password: (v) => (v ? null : t("signin.password_required")),
      code: (v) => (!factors || viaPasskey.current || v.trim() ? null : t("signin.code_required")),
    },
  );
  const name = productName(brand);
  const run = form.submit(
    async (v) => {
      const code = v.code.replace(/\s/g, "");
      const factor: SecondFactor = !factors
        ? {}
        : viaPasskey.current
          ? { passkey: true }
          : /^\d{6}$/.test(code)
            ? { totp_code: code }
            : { recovery_code: v.code.trim() };
      try {
        setSession(await signIn(v.address.trim(), v.password, factor));
      } catch (e) {
        const asked = !factors && secondFactorsAsked(e as Problem);
        if (asked) {
          setFactors(asked);
          throw { status: 401, detail: t(asked.includes("totp_code") ? "signin.code_asked" : "signin.passkey_asked") } satisfies Problem;
        }
        throw e;
      }
    },
    { address: ["username"], code: ["totp_code", "recovery_code"] },
  );
  return (
    <section class="signin card">
      <h1 id="page-title" tabIndex={-1}>{heading ?? (name ? t("signin.title_brand", { name }) : t("signin.title"))}</h1>
      <form
        noValidate
        onSubmit={(event) => {
          viaPasskey.current = false;
          return run(event);
        }}
      >
        <Field {...form.field("address")} label={t("signin.address")} type="email" autoComplete="username" inputMode="email" required />
        <Field {...form.field("password")} label={t("signin.password")} type="password" autoComplete="current-password" required />
        {factors?.includes("passkey") && (
          <p>
            <button
              type="button"
              disabled={form.busy}
              onClick={() => {
                viaPasskey.current = true;
                void run();
              }}
            >
              {t("signin.use_passkey")}
            </button>
          </p>
        )}
        {factors && (
          <Field {...form.field("code")} label={t("signin.code")} hint={t("signin.code_hint")} autoComplete="one-time-code" inputMode="numeric" />
        )}
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("signin.submit")} />
      </form>
      {children}
    </section>
  );
}
