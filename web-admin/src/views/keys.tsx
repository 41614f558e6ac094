// API keys: create (the secret is shown once, with a copy button), list with
// last use, revoke.
import { useState } from "preact/hooks";
import { type Schemas, api, call } from "../api";
import { type Key, formatDate, t } from "../i18n";
import { Badge, type Column, CopyButton, Dialog, ErrorBox, Field, FormError, Submit, Table, useForm, useLoad } from "../ui";
import { apiKeyName } from "../validate";

type ApiKey = Schemas["ApiKey"];

export function ApiKeys({ tenantId }: { tenantId: string }) {
  const keys = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/api-keys", { params: { path: { tenant_id: tenantId }, query: { limit: 200 } } })), [tenantId]);
  const form = useForm({ name: "", scope: "write" }, { name: apiKeyName });
  const [secret, setSecret] = useState<{ name: string; secret: string } | null>(null);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [error, setError] = useState<string | null>(null);

  const create = form.submit(
    async (v) => {
      const scopes: Schemas["Scope"][] = v.scope === "write" ? ["read", "write"] : ["read"];
      const created = await call(api.POST("/v1/tenants/{tenant_id}/api-keys", { params: { path: { tenant_id: tenantId } }, body: { name: v.name.trim(), scopes } }));
      setSecret({ name: created.name, secret: created.secret });
      form.setValues({ name: "", scope: v.scope });
      keys.reload();
    },
    { name: ["key name", "name"] },
  );
  const revoke = async (key: ApiKey) => {
    setError(null);
    try {
      await call(api.DELETE("/v1/api-keys/{api_key_id}", { params: { path: { api_key_id: key.id } } }));
    } catch (e) {
      setError((e as { detail: string }).detail);
    }
    setRevoking(null);
    keys.reload();
  };

  const columns: Column<ApiKey>[] = [
    { label: t("keys.name"), cell: (k) => <span class="strong">{k.name}</span> },
    { label: t("keys.prefix"), cell: (k) => <code>{k.prefix}…</code> },
    { label: t("keys.scopes"), cell: (k) => k.scopes.map((s) => t(`scope.${s}` as Key)).join(", ") },
    { label: t("keys.created"), cell: (k) => formatDate(k.created_at) },
    { label: t("keys.last_used"), cell: (k) => (k.last_used_at ? formatDate(k.last_used_at, true) : t("keys.never")) },
    {
      label: t("common.actions"),
      cell: (k) =>
        k.revoked_at ? (
          <Badge status="revoked" label={t("keys.revoked_on", { date: formatDate(k.revoked_at) })} />
        ) : (
          <button type="button" class="danger" onClick={() => setRevoking(k)} aria-label={t("keys.revoke_which", { name: k.name })}>{t("keys.revoke")}</button>
        ),
    },
  ];

  return (
    <>
      <form class="card inline-form" noValidate onSubmit={create} aria-labelledby="new-key-title">
        <h2 id="new-key-title">{t("keys.new")}</h2>
        <Field {...form.field("name")} label={t("keys.name")} placeholder={t("keys.name_placeholder")} autoComplete="off" />
        <div class="field">
          <label for="field-scope">{t("keys.scopes")}</label>
          <select id="field-scope" value={form.values.scope} onInput={form.set("scope")}>
            <option value="write">{t("keys.read_write")}</option>
            <option value="read">{t("keys.read_only")}</option>
          </select>
        </div>
        <Submit busy={form.busy} label={t("keys.create")} />
        <FormError message={form.formError} />
      </form>
      {error && <p class="form-error" role="alert">{error}</p>}
      {keys.error ? (
        <ErrorBox problem={keys.error} retry={keys.reload} />
      ) : (
        <Table caption={t("nav.keys")} columns={columns} rows={keys.data?.items as ApiKey[] | undefined} loading={keys.loading} empty={t("keys.empty")} rowKey={(k) => k.id} />
      )}
      {secret && (
        <Dialog title={t("keys.shown_once_title", { name: secret.name })} onClose={() => setSecret(null)}>
          <p class="warning">{t("keys.shown_once")}</p>
          <p class="copyable secret">
            <code data-testid="api-key-secret">{secret.secret}</code>
            <CopyButton text={secret.secret} label={t("keys.secret")} />
          </p>
          <button type="button" class="primary" onClick={() => setSecret(null)}>{t("keys.stored_it")}</button>
        </Dialog>
      )}
      {revoking && (
        <Dialog title={t("keys.revoke_title", { name: revoking.name })} onClose={() => setRevoking(null)}>
          <p>{t("keys.revoke_warning")}</p>
          <div class="buttons">
            <button type="button" class="danger" onClick={() => revoke(revoking)}>{t("keys.revoke")}</button>
            <button type="button" onClick={() => setRevoking(null)}>{t("common.cancel")}</button>
          </div>
        </Dialog>
      )}
    </>
  );
}
