// The operator's price list.
import { type Schemas, api, call } from "../api";
import { formatBytes, formatMoney, formatNumber, t } from "../i18n";
import { type Column, ErrorBox, Field, FormError, PageHeader, Submit, Table, useForm, useLoad } from "../ui";
import { nonNegativeInteger, planName } from "../validate";

type Plan = Schemas["Plan"];
const GB = 1_000_000_000;

export function Plans() {
  const plans = useLoad(() => call(api.GET("/v1/plans")), []);
  const form = useForm(
      { name: "", currency: "eur", seat_price: "4.00", storage_gb: "10", max_accounts: "1000", max_domains: "20", account_messages_per_hour: "500", account_recipients_per_day: "5000", solidarity_percent: "10" },
    {
      name: planName,
      currency: (v) => (/^[a-zA-Z]{3}$/.test(v.trim()) ? null : "`currency` must be a three-letter ISO 4217 code"),
      seat_price: (v) => (/^\d+(\.\d{1,2})?$/.test(v.trim()) ? null : "`seat_price_cents` cannot be negative"),
      storage_gb: (v) => (/^\d+$/.test(v) && Number(v) > 0 ? null : "`storage_per_seat_bytes` must be positive"),
      max_accounts: nonNegativeInteger("max_accounts"),
      max_domains: nonNegativeInteger("max_domains"),
      account_messages_per_hour: nonNegativeInteger("account_messages_per_hour"),
      account_recipients_per_day: nonNegativeInteger("account_recipients_per_day"),
      solidarity_percent: (v) => (/^\d+$/.test(v) && Number(v) <= 100 ? null : "`solidarity_percent` must be between 0 and 100"),
    },
  );
  const create = form.submit(
    async (v) => {
      await call(
        api.POST("/v1/plans", {
          body: {
            name: v.name.trim(),
            currency: v.currency.trim().toLowerCase(),
            seat_price_cents: Math.round(Number(v.seat_price) * 100),
            storage_per_seat_bytes: Number(v.storage_gb) * GB,
            max_accounts: Number(v.max_accounts),
            max_domains: Number(v.max_domains),
            account_messages_per_hour: Number(v.account_messages_per_hour),
            account_recipients_per_day: Number(v.account_recipients_per_day),
            solidarity_percent: Number(v.solidarity_percent),
          },
        }),
      );
      form.setValues({ ...v, name: "" });
      plans.reload();
    },
    { seat_price: ["seat_price_cents"], storage_gb: ["storage_per_seat_bytes"] },
  );
  const columns: Column<Plan>[] = [
    { label: t("plans.name"), cell: (p) => <span class="strong">{p.name}</span> },
    { label: t("plans.seat_price"), cell: (p) => formatMoney(p.seat_price_cents, p.currency), class: "num" },
    { label: t("plans.storage"), cell: (p) => formatBytes(p.storage_per_seat_bytes), class: "num" },
    { label: t("limits.accounts"), cell: (p) => formatNumber(p.max_accounts), class: "num" },
    { label: t("plans.sending"), cell: (p) => t("plans.sending_value", { hour: formatNumber(p.account_messages_per_hour), day: formatNumber(p.account_recipients_per_day) }) },
    { label: t("plans.solidarity"), cell: (p) => `${p.solidarity_percent} %`, class: "num" },
  ];
  const field = (k: Parameters<typeof form.field>[0], label: string) => <Field {...form.field(k)} label={label} inputMode={k === "name" || k === "currency" ? "text" : "numeric"} autoComplete="off" />;
  return (
    <section>
      <PageHeader title={t("nav.plans")} />
      {plans.error ? <ErrorBox problem={plans.error} retry={plans.reload} /> : <Table caption={t("nav.plans")} columns={columns} rows={plans.data as Plan[] | undefined} loading={plans.loading} empty={t("plans.empty")} rowKey={(p) => p.id} />}
      <form class="card form-grid" noValidate onSubmit={create} aria-labelledby="new-plan-title">
        <h2 id="new-plan-title">{t("plans.new")}</h2>
        <div class="row">{field("name", t("plans.name"))}{field("currency", t("plans.currency"))}{field("seat_price", t("plans.seat_price"))}</div>
        <div class="row">{field("storage_gb", t("plans.storage_gb"))}{field("max_accounts", t("limits.accounts"))}{field("max_domains", t("limits.domains"))}</div>
        <div class="row">{field("account_messages_per_hour", t("plans.per_hour"))}{field("account_recipients_per_day", t("plans.per_day"))}{field("solidarity_percent", t("plans.solidarity"))}</div>
        <p class="hint">{t("plans.solidarity_hint")}</p>
        <FormError message={form.formError} />
        <Submit busy={form.busy} label={t("plans.create")} />
      </form>
    </section>
  );
}
