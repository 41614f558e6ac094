// Accounts of a tenant: create (with an activation link, the owner sets the
// password on their device), suspend or reactivate, a new activation link
// for who lost their password (which makes a new key pair: said before it
// is done), and a quota bar each.
import { useState } from "preact/hooks";
import { type Problem, type Schemas, api, call } from "../api";
import { type Key, formatBytes, t } from "../i18n";
import { Badge, type Column, CopyButton, Dialog, ErrorBox, Field, FormError, QuotaBar, Select, Submit, Table, useForm, useLoad } from "../ui";
import { displayName, emailAddress, password } from "../validate";

type Account = Schemas["AccountView"];
const LEVELS: Schemas["Level"][] = ["standard", "sealed", "dispersed", "end-to-end"];

export function Accounts({ tenantId, tenant }: { tenantId: string; tenant: Schemas["Tenant"] | undefined }) {
  const accounts = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/accounts", { params: { path: { tenant_id: tenantId }, query: { limit: 200 } } })),
    [tenantId],
  );
  const [resetting, setResetting] = useState<Account | null>(null);
  const [rowError, setRowError] = useState<string | null>(null);
  const rows = accounts.data?.items as Account[] | undefined;
  const floor = tenant?.policy.min_level;

  const setStatus = async (account: Account, status: "active" | "suspended") => {
    setRowError(null);
    try {
      await call(api.PATCH("/v1/accounts/{account_id}", { params: { path: { account_id: account.id } }, body: { status } }));
      accounts.reload();
    } catch (e) {
      setRowError((e as { detail: string }).detail);
    }
  };

  const columns: Column<Account>[] = [
    {
      label: t("accounts.address"),
      cell: (a) => (
        <>
          <span class="strong">{a.address}</span>
          <br />
          <span class="small">{a.display_name}</span>
        </>
      ),
    },
    { label: t("accounts.role"), cell: (a) => t(`accountrole.${a.role}` as Key) },
    { label: t("accounts.level"), cell: (a) => t(`level.${a.level}` as Key) },
    { label: t("accounts.status"), cell: (a) => <Badge status={a.status} /> },
    {
      label: t("accounts.storage"),
      cell: (a) => {
        const cap = a.storage_quota_bytes ?? tenant?.limits.storage_quota_bytes ?? null;
        return (
          <div class="quota-cell">
            <QuotaBar used={a.storage_used_bytes} total={cap} label={t("accounts.storage_of", { address: a.address })} />
            <span class="small">{formatBytes(a.storage_used_bytes)}{cap ? ` / ${formatBytes(cap)}` : ""}</span>
          </div>
        );
      },
    },
    {
      label: t("common.actions"),
      cell: (a) =>
        a.status === "deleted" ? null : (
          <div class="row-actions">
            {a.status === "active" ? (
              <button type="button" onClick={() => setStatus(a, "suspended")} aria-label={t("accounts.suspend_who", { address: a.address })}>{t("accounts.suspend")}</button>
            ) : (
              <button type="button" onClick={() => setStatus(a, "active")} aria-label={t("accounts.reactivate_who", { address: a.address })}>{t("accounts.reactivate")}</button>
            )}
            <button type="button" onClick={() => setResetting(a)} aria-label={t("accounts.new_link_who", { address: a.address })}>{t("accounts.new_link")}</button>
          </div>
        ),
    },
  ];

  return (
    <>
      <NewAccount tenantId={tenantId} floor={floor} onCreated={accounts.reload} />
      {rowError && <p class="form-error" role="alert">{rowError}</p>}
      {accounts.error ? (
        <ErrorBox problem={accounts.error} retry={accounts.reload} />
      ) : (
        <Table caption={t("nav.accounts")} columns={columns} rows={rows} loading={accounts.loading} empty={t("accounts.empty")} rowKey={(a) => a.id} />
      )}
      {resetting && (
        <NewActivationLink
          account={resetting}
          onClose={() => {
            setResetting(null);
            accounts.reload();
          }}
        />
      )}
    </>
  );
}

function NewAccount({ tenantId, floor, onCreated }: { tenantId: string; floor: Schemas["Level"] | undefined; onCreated: () => void }) {
  const form = useForm(
    { address: "", display_name: "", password: "", role: "user", level: "" },
    { address: emailAddress, display_name: (v) => (v.trim() === "" ? null : displayName(v)), password: (v) => (v === "" ? null : password(v)) },
  );
  const [created, setCreated] = useState<string | null>(null);
  const [link, setLink] = useState<string | null>(null);
  const allowed = floor ? LEVELS.slice(LEVELS.indexOf(floor)) : LEVELS;
  const submit = form.submit(
    async (v) => {
      const account = await call(
        api.POST("/v1/tenants/{tenant_id}/accounts", {
          params: { path: { tenant_id: tenantId } },
          body: {
            address: v.address.trim().toLowerCase(),
            password: v.password || null,
            display_name: v.display_name.trim() || null,
            role: v.role as Schemas["AccountRole"],
            level: (v.level || null) as Schemas["Level"] | null,
          },
        }),
      );
      setCreated(account.address);
      setLink(account.activation?.url ?? null);
      form.setValues({ address: "", display_name: "", password: "", role: v.role, level: v.level });
      onCreated();
    },
    { address: ["mailbox name", "email address", "address", "domain"], display_name: ["display name"], password: ["password"], level: ["level"] },
  );
  return (
    <form class="card form-grid" noValidate onSubmit={submit} aria-labelledby="new-account-title">
      <h2 id="new-account-title">{t("accounts.new")}</h2>
      <div class="row">
        <Field {...form.field("address")} label={t("accounts.address")} type="email" autoComplete="off" />
        <Field {...form.field("display_name")} label={t("accounts.display_name")} autoComplete="off" />
      </div>
      <div class="row">
        <Field {...form.field("password")} label={t("accounts.password_optional")} type="password" autoComplete="new-password" hint={t("password.hint")} />
        <Select {...form.field("role")} label={t("accounts.role")} options={[{ value: "user", label: t("accountrole.user") }, { value: "admin", label: t("accountrole.admin") }]} />
        <Select
          {...form.field("level")}
          label={t("accounts.level")}
          options={[{ value: "", label: t("accounts.level_default") }, ...allowed.map((l) => ({ value: l, label: t(`level.${l}` as Key) }))]}
          hint={floor ? t("accounts.level_floor", { level: t(`level.${floor}` as Key) }) : undefined}
        />
      </div>
      <FormError message={form.formError} />
      {created && <p class="notice" role="status">{t("accounts.created", { address: created })}</p>}
      {link && <ActivationLinkShown url={link} />}
      <Submit busy={form.busy} label={t("accounts.create")} />
    </form>
  );
}

/** An activation link, shown once, to copy for the account's owner. */
function ActivationLinkShown({ url }: { url: string }) {
  return (
    <div class="notice" role="status">
      <p>{t("accounts.activation_link")}</p>
      <p>
        <code data-testid="activation-link">{url}</code> <CopyButton text={url} label={t("common.copy")} />
      </p>
    </div>
  );
}

function NewActivationLink({ account, onClose }: { account: Account; onClose: () => void }) {
  const [link, setLink] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const make = async () => {
    setBusy(true);
    setError(null);
    try {
      const made = await call(api.POST("/v1/accounts/{account_id}/activation", { params: { path: { account_id: account.id } } }));
      setLink(made.url);
    } catch (e) {
      setError((e as Problem).detail ?? String(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={t("accounts.new_link_title", { address: account.address })} onClose={onClose}>
      {link ? (
        <>
          <ActivationLinkShown url={link} />
          <button type="button" class="primary" onClick={onClose}>{t("common.close")}</button>
        </>
      ) : (
        <>
          <p class="warning">{t("accounts.new_link_warning")}</p>
          <FormError message={error} />
          <div class="buttons">
            <button type="button" class="primary" disabled={busy} onClick={make}>{t("accounts.new_link_make")}</button>
            <button type="button" onClick={onClose}>{t("common.cancel")}</button>
          </div>
        </>
      )}
    </Dialog>
  );
}
