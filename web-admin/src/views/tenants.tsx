// Tenants as a tree (operator: everything; reseller: its customers), with a
// filter, and the form that creates a tenant — with its domain and first
// admin in the same step when given.
import { useMemo, useState } from "preact/hooks";
import { type Schemas, type Session, api, call } from "../api";
import { formatBytes, formatLimit, t } from "../i18n";
import { navigate } from "../router";
import { asTree } from "../tree";
import { Badge, type Column, ErrorBox, Field, FormError, PageHeader, QuotaBar, Select, Submit, Table, useForm, useLoad } from "../ui";
import { domainName, emailAddress, nonNegativeInteger, password, tenantName } from "../validate";

type Tenant = Schemas["Tenant"];

async function allTenants(): Promise<Tenant[]> {
  const out: Tenant[] = [];
  let cursor: string | undefined;
  do {
    const page = await call(api.GET("/v1/tenants", { params: { query: { limit: 200, cursor } } }));
    out.push(...(page.items as Tenant[]));
    cursor = page.next_cursor ?? undefined;
  } while (cursor && out.length < 10_000);
  return out;
}

export function Tenants({ session }: { session: Session }) {
  const tenants = useLoad(allTenants, []);
  const [filter, setFilter] = useState("");
  const [status, setStatus] = useState("");
  const rows = useMemo(() => {
    if (!tenants.data) return undefined;
    const needle = filter.trim().toLowerCase();
    return asTree(tenants.data).filter(
      ({ tenant }) => (!needle || tenant.name.toLowerCase().includes(needle)) && (!status || tenant.status === status),
    );
  }, [tenants.data, filter, status]);
  const columns: Column<{ tenant: Tenant; depth: number }>[] = [
    {
      label: t("tenants.name"),
      cell: ({ tenant, depth }) => (
        <span class="tree" style={{ paddingInlineStart: `${depth * 1.25}rem` }}>
          {depth > 0 && <span aria-hidden="true" class="branch">└ </span>}
          <a href={`/admin/tenants/${tenant.id}`}>{tenant.name}</a>
        </span>
      ),
    },
    { label: t("tenants.kind"), cell: ({ tenant }) => t(`kind.${tenant.kind}`) },
    { label: t("tenants.status"), cell: ({ tenant }) => <Badge status={tenant.status} /> },
    {
      label: t("tenants.storage"),
      cell: ({ tenant }) => (
        <div class="quota-cell">
          <QuotaBar used={tenant.storage_used_bytes} total={tenant.limits.storage_quota_bytes} label={t("tenants.storage_of", { name: tenant.name })} />
          <span class="small">{formatBytes(tenant.storage_used_bytes)} / {formatBytes(tenant.limits.storage_quota_bytes)}</span>
        </div>
      ),
    },
    { label: t("tenants.accounts_limit"), cell: ({ tenant }) => formatLimit(tenant.limits.max_accounts), class: "num" },
  ];
  return (
    <section>
      <PageHeader title={session.role === "operator" ? t("nav.tenants") : t("nav.customers")}>
        <a class="button primary" href="/admin/tenants/new">{session.role === "operator" ? t("tenants.create") : t("nav.onboard")}</a>
      </PageHeader>
      <div class="filters" role="search">
        <div class="field">
          <label for="tenant-filter">{t("tenants.filter")}</label>
          <input id="tenant-filter" type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="tenant-status">{t("tenants.status")}</label>
          <select id="tenant-status" value={status} onInput={(e) => setStatus(e.currentTarget.value)}>
            <option value="">{t("tenants.all")}</option>
            <option value="active">{t("status.active")}</option>
            <option value="suspended">{t("status.suspended")}</option>
            <option value="closed">{t("status.closed")}</option>
          </select>
        </div>
      </div>
      {tenants.error ? (
        <ErrorBox problem={tenants.error} retry={tenants.reload} />
      ) : (
        <Table caption={t("nav.tenants")} columns={columns} rows={rows} loading={tenants.loading} empty={t("tenants.empty")} rowKey={(r) => r.tenant.id} skeletonRows={5} />
      )}
    </section>
  );
}

const GB = 1_000_000_000;

/**
 * Creates a tenant under the signed-in one. With a domain and an admin it is
 * the one-step onboarding: tenant, then `POST /v1/tenants/{id}/onboard`. If
 * the second call fails the tenant is kept and a retry only onboards.
 */
export function NewTenant({ session }: { session: Session }) {
  const operator = session.role === "operator";
  const [created, setCreated] = useState<Tenant | null>(null);
  const form = useForm(
    {
      name: "",
      kind: operator ? "reseller" : "enterprise",
      max_accounts: "50",
      max_domains: "5",
      storage_gb: "50",
      domain: "",
      admin_address: "",
      admin_password: "",
    },
    {
      name: tenantName,
      max_accounts: nonNegativeInteger("max_accounts"),
      max_domains: nonNegativeInteger("max_domains"),
      storage_gb: nonNegativeInteger("storage_quota_bytes"),
    },
  );
  const v = form.values;
  const onboarding = v.domain.trim() !== "" || v.admin_address.trim() !== "" || !operator;
  const kinds = operator ? ["reseller", "enterprise", "public"] : ["enterprise", "reseller"];

  const submit = form.submit(
    async (values) => {
      // The onboarding fields are checked only when they are used.
      if (onboarding) {
        const domain = values.domain.trim().toLowerCase();
        const address = values.admin_address.trim().toLowerCase();
        const problem =
          (domainName(domain) && { detail: domainName(domain)!, status: 0, field: "domain" }) ||
          (emailAddress(address) && { detail: emailAddress(address)!, status: 0 }) ||
          (!address.endsWith(`@${domain}`) && { detail: t("onboard.address_in_domain", { domain }), status: 0, field: "admin_address" }) ||
          (password(values.admin_password) && { detail: password(values.admin_password)!, status: 0 });
        if (problem) throw problem;
      }
      let tenant = created;
      if (!tenant) {
        tenant = await call(
          api.POST("/v1/tenants", {
            body: {
              name: values.name.trim(),
              kind: values.kind as Schemas["TenantKind"],
              parent_id: operator ? null : session.tenantId,
              limits: {
                max_accounts: Number(values.max_accounts),
                max_domains: Number(values.max_domains),
                storage_quota_bytes: Number(values.storage_gb) * GB,
              },
            },
          }),
        );
        setCreated(tenant);
      }
      if (onboarding) {
        await call(
          api.POST("/v1/tenants/{tenant_id}/onboard", {
            params: { path: { tenant_id: tenant.id } },
            body: {
              domain: values.domain.trim().toLowerCase(),
              admin: { address: values.admin_address.trim().toLowerCase(), password: values.admin_password, role: "admin" },
            },
          }),
        );
      }
      navigate(`/tenants/${tenant.id}${onboarding ? "/domains" : ""}`);
    },
    {
      name: ["tenant name"],
      max_accounts: ["max_accounts", "accounts"],
      max_domains: ["max_domains", "domains"],
      storage_gb: ["storage_quota_bytes", "storage"],
      domain: ["domain name", "domain"],
      admin_address: ["mailbox name", "email address", "address"],
      admin_password: ["password"],
    },
  );

  return (
    <section>
      <PageHeader title={operator ? t("tenants.create") : t("nav.onboard")} />
      <p class="lead">{operator ? t("tenants.create_lead") : t("onboard.lead")}</p>
      <form class="card form-grid" noValidate onSubmit={submit}>
        <fieldset disabled={!!created}>
          <legend>{operator ? t("tenants.tenant") : t("onboard.tenant")}</legend>
          <Field {...form.field("name")} label={t("tenants.name")} required autoComplete="organization" />
          <Select {...form.field("kind")} label={t("tenants.kind")} options={kinds.map((k) => ({ value: k, label: t(`kind.${k}` as "kind.reseller") }))} />
          <div class="row">
            <Field {...form.field("max_accounts")} label={t("limits.accounts")} inputMode="numeric" />
            <Field {...form.field("max_domains")} label={t("limits.domains")} inputMode="numeric" />
            <Field {...form.field("storage_gb")} label={t("limits.storage_gb")} inputMode="numeric" />
          </div>
        </fieldset>
        <fieldset>
          <legend>{operator ? t("onboard.optional") : t("onboard.domain_admin")}</legend>
          <Field {...form.field("domain")} label={t("onboard.domain")} placeholder="example.com" autoComplete="off" />
          <Field {...form.field("admin_address")} label={t("onboard.admin_address")} type="email" placeholder={`admin@${v.domain || "example.com"}`} autoComplete="off" />
          <Field {...form.field("admin_password")} label={t("onboard.admin_password")} type="password" autoComplete="new-password" hint={t("password.hint")} />
        </fieldset>
        {created && <p class="notice" role="status">{t("onboard.created_retry", { name: created.name })}</p>}
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={onboarding ? t("onboard.submit") : t("tenants.create")} />
      </form>
    </section>
  );
}
