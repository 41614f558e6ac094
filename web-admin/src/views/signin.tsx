import { setSession, signIn } from "../api";
import { type Brand, productName } from "../brand";
import { t } from "../i18n";
import { Field, FormError, Submit, useForm } from "../ui";
import { emailAddress } from "../validate";

export function SignIn({ brand }: { brand: Brand | null }) {
  const form = useForm({ address: "", password: "" }, { address: emailAddress, password: (v) => (v ? null : t("signin.password_required")) });
  const name = productName(brand);
  return (
    <section class="signin card">
      <h1 id="page-title" tabIndex={-1}>{name ? t("signin.title_brand", { name }) : t("signin.title")}</h1>
      <form
        noValidate
        onSubmit={form.submit(
          async (v) => {
            setSession(await signIn(v.address.trim(), v.password));
          },
          { address: ["username"] },
        )}
      >
        <Field {...form.field("address")} label={t("signin.address")} type="email" autoComplete="username" inputMode="email" required />
        <Field {...form.field("password")} label={t("signin.password")} type="password" autoComplete="current-password" required />
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("signin.submit")} />
      </form>
    </section>
  );
}
