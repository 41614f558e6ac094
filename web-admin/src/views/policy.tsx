// The confidentiality policy, in plain words: the lowest level any account
// of the tenant may have, and the countries whose storage sites may hold its
// dispersed mail.
import { useEffect, useState } from "preact/hooks";
import { type Schemas, type Session, api, call } from "../api";
import { type Key, t } from "../i18n";
import { ErrorBox, FormError, useLoad } from "../ui";

const LEVELS: Schemas["Level"][] = ["standard", "sealed", "dispersed", "end-to-end"];

export function Policy({ tenant, reload }: { session: Session; tenant: Schemas["Tenant"] | undefined; reload: () => void }) {
  const sites = useLoad(() => call(api.GET("/v1/jurisdictions")), []);
  const [level, setLevel] = useState<Schemas["Level"]>("standard");
  const [allowed, setAllowed] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    if (tenant) {
      setLevel(tenant.policy.min_level);
      setAllowed(tenant.policy.allowed_jurisdictions);
    }
  }, [tenant]);
  if (!tenant) return <div class="card bone-block" aria-busy="true" />;

  const save = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setSaved(false);
    try {
      await call(
        api.PATCH("/v1/tenants/{tenant_id}", {
          params: { path: { tenant_id: tenant.id } },
          body: { policy: { ...tenant.policy, min_level: level, allowed_jurisdictions: allowed } },
        }),
      );
      setSaved(true);
      reload();
    } catch (err) {
      setError((err as { detail: string }).detail);
    } finally {
      setBusy(false);
    }
  };
  const toggle = (code: string) => setAllowed((a) => (a.includes(code) ? a.filter((x) => x !== code) : [...a, code].sort()));
  const region = (code: string) => {
    try {
      return new Intl.DisplayNames([document.documentElement.lang || "en"], { type: "region" }).of(code) ?? code;
    } catch {
      return code;
    }
  };

  return (
    <form class="card policy" onSubmit={save}>
      <h2>{t("policy.now")}</h2>
      <p class="explain">{t(`policy.explain.${tenant.policy.min_level}` as Key)}</p>
      <p class="explain">
        {tenant.policy.allowed_jurisdictions.length === 0
          ? t("policy.anywhere")
          : t("policy.only_in", { list: tenant.policy.allowed_jurisdictions.map(region).join(", ") })}
      </p>

      <fieldset>
        <legend>{t("policy.floor")}</legend>
        {LEVELS.map((l) => (
          <label class="choice" key={l}>
            <input type="radio" name="min_level" value={l} checked={level === l} onChange={() => setLevel(l)} />
            <span>
              <strong>{t(`level.${l}` as Key)}</strong>
              <span class="small block">{t(`level.${l}.what` as Key)}</span>
            </span>
          </label>
        ))}
      </fieldset>

      <fieldset>
        <legend>{t("policy.jurisdictions")}</legend>
        <p class="hint">{t("policy.jurisdictions_hint")}</p>
        {sites.error && <ErrorBox problem={sites.error} retry={sites.reload} />}
        {sites.data?.jurisdictions.map((code) => (
          <label class="choice" key={code}>
            <input type="checkbox" checked={allowed.includes(code)} onChange={() => toggle(code)} />
            <span>{region(code)} ({code})</span>
          </label>
        ))}
      </fieldset>
      <FormError message={error} />
      {saved && <p class="notice" role="status">{t("common.saved")}</p>}
      <button type="submit" class="primary" disabled={busy}>{busy ? t("common.working") : t("common.save")}</button>
    </form>
  );
}
