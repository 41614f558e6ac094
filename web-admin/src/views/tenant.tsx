// One tenant's pages. A tenant admin sees its own; a reseller or the operator
// opens any tenant of its subtree and gets the same pages (the API decides
// what each role may change).
import { type Schemas, type Session, api, call } from "../api";
import { type Key, formatBytes, formatDate, formatLimit, t } from "../i18n";
import { Badge, ErrorBox, PageHeader, QuotaBar, useLoad } from "../ui";
import { Domains } from "./domains";
import { Accounts } from "./accounts";
import { Addresses } from "./addresses";
import { MailRules, tenantRules } from "./filters";
import { Policy } from "./policy";
import { Branding } from "./branding";
import { Billing } from "./billing";
import { ApiKeys } from "./keys";
import { Audit } from "./audit";
import { DataAndTransparency } from "./data";
import { TrafficChart, StorageChart } from "./overview";

export type Tab = "overview" | "domains" | "accounts" | "addresses" | "policy" | "filters" | "branding" | "billing" | "keys" | "audit" | "data";
const TABS: Tab[] = ["overview", "domains", "accounts", "addresses", "policy", "filters", "branding", "billing", "keys", "audit", "data"];

export function TenantPage({ session, tenantId, tab }: { session: Session; tenantId: string; tab: Tab }) {
  const tenant = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const own = tenantId === session.tenantId;
  const ownTenantAdmin = own && session.role === "tenant_admin";
  const title = tenant.data?.name ?? "\u00a0";
  if (!TABS.includes(tab)) tab = "overview";
  return (
    <section>
      <PageHeader title={ownTenantAdmin || own ? t(`tab.${tab}` as Key) : title}>
        {tenant.data && <Badge status={tenant.data.status} />}
      </PageHeader>
      {!ownTenantAdmin && !(own && session.role !== "operator") && (
        <nav class="tabs" aria-label={t("tab.label", { name: title })}>
          {TABS.map((x) => (
            <a key={x} href={`/admin/tenants/${tenantId}/${x}`} aria-current={x === tab ? "page" : undefined}>{t(`tab.${x}` as Key)}</a>
          ))}
        </nav>
      )}
      {tenant.error ? (
        <ErrorBox problem={tenant.error} retry={tenant.reload} />
      ) : (
        <TabBody session={session} tenantId={tenantId} tab={tab} tenant={tenant.data} reload={tenant.reload} />
      )}
    </section>
  );
}

function TabBody({ session, tenantId, tab, tenant, reload }: { session: Session; tenantId: string; tab: Tab; tenant: Schemas["Tenant"] | undefined; reload: () => void }) {
  switch (tab) {
    case "domains":
      return <Domains tenantId={tenantId} />;
    case "accounts":
      return <Accounts tenantId={tenantId} tenant={tenant} />;
    case "addresses":
      return <Addresses tenantId={tenantId} />;
    case "policy":
      return <Policy session={session} tenant={tenant} reload={reload} />;
    case "filters":
      return <MailRules store={tenantRules(tenantId)} />;
    case "branding":
      return <Branding tenantId={tenantId} />;
    case "billing":
      return <Billing tenantId={tenantId} session={session} />;
    case "keys":
      return <ApiKeys tenantId={tenantId} />;
    case "audit":
      return <Audit tenantId={tenantId} />;
    case "data":
      return <DataAndTransparency session={session} tenantId={tenantId} tenant={tenant} reload={reload} />;
    default:
      return <TenantOverview session={session} tenant={tenant} reload={reload} />;
  }
}

function TenantOverview({ session, tenant, reload }: { session: Session; tenant: Schemas["Tenant"] | undefined; reload: () => void }) {
  const canChangeStatus = tenant && tenant.id !== session.tenantId && session.role !== "tenant_admin" && tenant.status !== "closed";
  const setStatus = async (status: "active" | "suspended") => {
    if (!tenant) return;
    await call(api.PATCH("/v1/tenants/{tenant_id}", { params: { path: { tenant_id: tenant.id } }, body: { status } }));
    reload();
  };
  return (
    <>
      <div class="cards">
        <div class="card stat">
          <h2>{t("tenants.storage")}</h2>
          {tenant ? (
            <>
              <p class="big">{formatBytes(tenant.storage_used_bytes)}</p>
              <QuotaBar used={tenant.storage_used_bytes} total={tenant.limits.storage_quota_bytes} label={t("tenants.storage")} />
              <p class="small">{t("tenants.of_quota", { quota: formatBytes(tenant.limits.storage_quota_bytes) })}</p>
            </>
          ) : (
            <p class="big bone-text">&nbsp;</p>
          )}
        </div>
        <div class="card stat">
          <h2>{t("tenants.limits")}</h2>
          <dl>
            <dt>{t("limits.accounts")}</dt>
            <dd>{tenant ? formatLimit(tenant.limits.max_accounts) : "…"}</dd>
            <dt>{t("limits.domains")}</dt>
            <dd>{tenant ? formatLimit(tenant.limits.max_domains) : "…"}</dd>
            <dt>{t("tenants.kind")}</dt>
            <dd>{tenant ? t(`kind.${tenant.kind}` as Key) : "…"}</dd>
            <dt>{t("tenants.created")}</dt>
            <dd>{formatDate(tenant?.created_at)}</dd>
          </dl>
        </div>
        {canChangeStatus && (
          <div class="card stat">
            <h2>{t("tenants.status")}</h2>
            <p><Badge status={tenant.status} /></p>
            {tenant.status === "active" ? (
              <button type="button" class="danger" onClick={() => setStatus("suspended")}>{t("tenants.suspend")}</button>
            ) : (
              <button type="button" onClick={() => setStatus("active")}>{t("tenants.reactivate")}</button>
            )}
          </div>
        )}
      </div>
      {tenant && (
        <div class="charts">
          <TrafficChart tenantId={tenant.id} />
          <StorageChart tenantId={tenant.id} />
        </div>
      )}
    </>
  );
}
