// The signed-in administrator's own account: password, second factor,
// passkeys and the key (src/credentials.tsx, shared with the users' app).
import type { Session } from "../api";
import { KeyExport, Passkeys, PasswordChange, SecondFactor } from "../credentials";
import { t } from "../i18n";

export function Account({ session }: { session: Session }) {
  const accountId = session.accountId;
  if (!accountId) {
    return (
      <section>
        <h1 id="page-title" tabIndex={-1}>{t("account.title")}</h1>
        <p>{t("account.no_account")}</p>
      </section>
    );
  }
  return (
    <section>
      <h1 id="page-title" tabIndex={-1}>{t("account.title")}</h1>
      <PasswordChange session={session} accountId={accountId} />
      <SecondFactor accountId={accountId} />
      <Passkeys session={session} accountId={accountId} />
      <KeyExport session={session} accountId={accountId} />
    </section>
  );
}
