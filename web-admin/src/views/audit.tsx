// The tenant's audit log, newest first, a page at a time.
import { useState } from "preact/hooks";
import { type Schemas, api, call } from "../api";
import { formatDate, t } from "../i18n";
import { type Column, ErrorBox, Table, useLoad } from "../ui";

type Entry = Schemas["AuditEntry"];

export function Audit({ tenantId }: { tenantId: string }) {
  const [before, setBefore] = useState<number[]>([]);
  const cursor = before.at(-1);
  const page = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/audit", { params: { path: { tenant_id: tenantId }, query: { limit: 50, before: cursor } } })),
    [tenantId, cursor],
  );
  const columns: Column<Entry>[] = [
    { label: t("audit.when"), cell: (e) => <time dateTime={e.at}>{formatDate(e.at, true)}</time> },
    { label: t("audit.who"), cell: (e) => e.actor },
    { label: t("audit.action"), cell: (e) => <code>{e.action}</code> },
    { label: t("audit.object"), cell: (e) => <span class="small">{e.object_type} {e.object_id}</span> },
    { label: t("audit.detail"), cell: (e) => <span class="small mono">{e.detail ? JSON.stringify(e.detail) : ""}</span> },
  ];
  if (page.error) return <ErrorBox problem={page.error} retry={page.reload} />;
  return (
    <>
      <Table caption={t("nav.audit")} columns={columns} rows={page.data?.items} loading={page.loading} empty={t("audit.empty")} rowKey={(e) => String(e.id)} skeletonRows={8} />
      <div class="pager">
        <button type="button" disabled={before.length === 0} onClick={() => setBefore(before.slice(0, -1))}>{t("common.newer")}</button>
        <button type="button" disabled={!page.data?.next_before} onClick={() => page.data?.next_before && setBefore([...before, page.data.next_before])}>{t("common.older")}</button>
      </div>
    </>
  );
}
