// Aliases and groups of a tenant. An alias is one more address of an
// account; a group delivers a copy to each member, and who may write to it
// is said in plain words. Create either, change a group's members, posting
// and name or an alias's account, delete after a confirmation; the API's
// problems (a taken address, a domain that is not verified) land next to
// the field they are about.
import { useState } from "preact/hooks";
import { type Problem, type Schemas, api, call } from "../api";
import { type Key, formatNumber, t } from "../i18n";
import { type Column, Dialog, ErrorBox, Field, FormError, Select, Submit, Table, fieldId, useForm, useLoad } from "../ui";
import { emailAddress } from "../validate";

type Address = Schemas["Address"];
type Account = Schemas["AccountView"];
type Kind = Schemas["AddressKind"];
type Posting = Schemas["Posting"];

const KINDS: Kind[] = ["alias", "group"];
const POSTINGS: Posting[] = ["anyone", "tenant", "members"];
/** Past this many accounts, the member list gets a search field. */
const FILTER_FROM = 8;

export function Addresses({ tenantId }: { tenantId: string }) {
  const addresses = useLoad(() => call(api.GET("/v1/tenants/{tenant_id}/addresses", { params: { path: { tenant_id: tenantId } } })), [tenantId]);
  const accounts = useLoad(
    () => call(api.GET("/v1/tenants/{tenant_id}/accounts", { params: { path: { tenant_id: tenantId }, query: { limit: 200 } } })),
    [tenantId],
  );
  const [editing, setEditing] = useState<Address | null>(null);
  const [deleting, setDeleting] = useState<Address | null>(null);
  const [rowError, setRowError] = useState<string | null>(null);
  const all = accounts.data?.items as Account[] | undefined;
  const owners = new Map((all ?? []).map((a) => [a.id, a.address]));
  const choosable = (all ?? []).filter((a) => a.status !== "deleted");
  const rows = addresses.data?.items;

  const remove = async (address: Address) => {
    setRowError(null);
    try {
      await call(api.DELETE("/v1/addresses/{address_id}", { params: { path: { address_id: address.id } } }));
    } catch (e) {
      setRowError((e as Problem).detail ?? String(e));
    }
    setDeleting(null);
    addresses.reload();
  };

  const columns: Column<Address>[] = [
    {
      label: t("addresses.address"),
      cell: (a) => (
        <>
          <span class="strong">{a.address}</span>
          {a.name && (
            <>
              <br />
              <span class="small">{a.name}</span>
            </>
          )}
        </>
      ),
    },
    { label: t("addresses.kind"), cell: (a) => t(`addresskind.${a.kind}` as Key) },
    {
      label: t("addresses.delivers_to"),
      cell: (a) =>
        a.kind === "alias"
          ? a.account_id
            ? owners.get(a.account_id) ?? (all ? <span class="small">{t("addresses.unknown_account")}</span> : "…")
            : "—"
          : memberCount(a.members.length),
    },
    { label: t("addresses.posting_col"), cell: (a) => t(`posting.${a.posting}` as Key) },
    {
      label: t("common.actions"),
      cell: (a) => (
        <div class="row-actions">
          <button type="button" onClick={() => setEditing(a)} aria-label={t("addresses.edit_who", { address: a.address })} disabled={!all}>
            {t("addresses.edit")}
          </button>
          <button type="button" class="danger" onClick={() => setDeleting(a)} aria-label={t("addresses.delete_who", { address: a.address })}>
            {t("addresses.delete")}
          </button>
        </div>
      ),
    },
  ];

  return (
    <>
      <AddressForm tenantId={tenantId} accounts={choosable} loading={!all} prefix="" onDone={addresses.reload} />
      {accounts.error && <ErrorBox problem={accounts.error} retry={accounts.reload} />}
      {rowError && <p class="form-error" role="alert">{rowError}</p>}
      {addresses.error ? (
        <ErrorBox problem={addresses.error} retry={addresses.reload} />
      ) : (
        <Table caption={t("nav.addresses")} columns={columns} rows={rows} loading={addresses.loading} empty={t("addresses.empty")} rowKey={(a) => a.id} />
      )}
      {editing && (
        <Dialog title={t("addresses.edit_title", { address: editing.address })} onClose={() => setEditing(null)}>
          <AddressForm
            tenantId={tenantId}
            accounts={choosable}
            loading={false}
            prefix="edit_"
            current={editing}
            onCancel={() => setEditing(null)}
            onDone={() => {
              setEditing(null);
              addresses.reload();
            }}
          />
        </Dialog>
      )}
      {deleting && (
        <Dialog title={t("addresses.delete_title", { address: deleting.address })} onClose={() => setDeleting(null)}>
          <p>{t("addresses.delete_warning")}</p>
          <div class="buttons">
            <button type="button" class="danger" onClick={() => remove(deleting)}>{t("addresses.delete")}</button>
            <button type="button" onClick={() => setDeleting(null)}>{t("common.cancel")}</button>
          </div>
        </Dialog>
      )}
    </>
  );
}

function memberCount(n: number): string {
  if (n === 0) return t("addresses.member_count_none");
  if (n === 1) return t("addresses.member_count_one");
  return t("addresses.member_count", { count: formatNumber(n) });
}

/**
 * Creates an alias or a group, or changes one (`current`): its address and
 * kind then stay. `prefix` keeps the field ids of the dialog apart from
 * those of the form on the page.
 */
function AddressForm({ tenantId, accounts, loading, prefix, current, onDone, onCancel }: {
  tenantId: string;
  accounts: Account[];
  loading: boolean;
  prefix: string;
  current?: Address;
  onDone: () => void;
  onCancel?: () => void;
}) {
  const k = (name: string) => prefix + name;
  const [kind, setKind] = useState<Kind>(current?.kind ?? "alias");
  const [members, setMembers] = useState<string[]>(current?.members ?? []);
  const [created, setCreated] = useState<string | null>(null);
  const blank = { [k("address")]: "", [k("account_id")]: "", [k("name")]: "", [k("posting")]: "anyone", [k("members")]: "" };
  const form = useForm<string>(
    current
      ? { ...blank, [k("address")]: current.address, [k("account_id")]: current.account_id ?? "", [k("name")]: current.name, [k("posting")]: current.posting }
      : blank,
    {
      [k("address")]: current ? null : (v) => emailAddress(v.trim()),
      [k("account_id")]: kind === "alias" ? (v) => (v ? null : t("addresses.account_required")) : null,
    },
  );
  // The keys are made up (`prefix`): each is there all the same.
  const field = (key: string) => ({ ...form.field(key), value: form.values[key] ?? "" });
  // Which field a problem of the API is about, by the words it uses.
  const aliases: Record<string, string[]> =
    kind === "alias"
      ? { [k("address")]: ["address", "domain"], [k("account_id")]: ["account_id", "account", "members"] }
      : { [k("address")]: ["address", "domain"], [k("members")]: ["members", "member", "account"], [k("name")]: ["name"] };

  const submit = form.submit(async (v) => {
    setCreated(null);
    const address = current?.address ?? v[k("address")]!.trim().toLowerCase();
    const body: Schemas["AddressRequest"] =
      kind === "alias"
        ? { address, kind, account_id: v[k("account_id")]! }
        : { address, kind, members, posting: v[k("posting")] as Posting, name: v[k("name")]!.trim() };
    if (current) {
      await call(api.PUT("/v1/addresses/{address_id}", { params: { path: { address_id: current.id } }, body }));
    } else {
      const made = await call(api.POST("/v1/tenants/{tenant_id}/addresses", { params: { path: { tenant_id: tenantId } }, body }));
      setCreated(made.address);
      form.setValues({ ...blank, [k("posting")]: v[k("posting")]! });
      setMembers([]);
    }
    onDone();
  }, aliases);

  const titleId = `${prefix}address-form-title`;
  return (
    <form class={current ? "form-grid" : "card form-grid"} noValidate onSubmit={submit} aria-labelledby={current ? undefined : titleId}>
      {current ? (
        <p class="small">
          {t(`addresskind.${current.kind}` as Key)} · {t("addresses.edit_fixed")}
        </p>
      ) : (
        <>
          <h2 id={titleId}>{t("addresses.new")}</h2>
          <p class="lead">{t("addresses.lead")}</p>
          <fieldset>
            <legend>{t("addresses.kind_choice")}</legend>
            {KINDS.map((x) => (
              <label class="choice" key={x}>
                <input type="radio" name={k("kind")} value={x} checked={kind === x} onChange={() => setKind(x)} />
                <span>
                  <strong>{t(`addresskind.${x}` as Key)}</strong>
                  <span class="small block">{t(`addresskind.${x}.what` as Key)}</span>
                </span>
              </label>
            ))}
          </fieldset>
        </>
      )}
      <div class="row">
        {!current && <Field {...field(k("address"))} label={t("addresses.address")} type="email" autoComplete="off" placeholder="sales@example.com" />}
        {kind === "alias" ? (
          <Select
            {...field(k("account_id"))}
            label={t("addresses.account")}
            options={[
              { value: "", label: loading ? t("common.loading") : t("addresses.choose_account") },
              ...accounts.map((a) => ({ value: a.id, label: a.address })),
            ]}
            hint={!loading && accounts.length === 0 ? t("addresses.no_accounts") : undefined}
          />
        ) : (
          <Field {...field(k("name"))} label={t("addresses.name")} hint={t("addresses.name_hint")} autoComplete="off" />
        )}
      </div>
      {kind === "group" && (
        <>
          <Members
            id={fieldId(k("members"))}
            accounts={accounts}
            loading={loading}
            chosen={members}
            onChange={setMembers}
            error={form.errors[k("members")]}
          />
          <fieldset>
            <legend>{t("addresses.posting")}</legend>
            {POSTINGS.map((p) => (
              <label class="choice" key={p}>
                <input type="radio" name={k("posting")} value={p} checked={form.values[k("posting")] === p} onChange={form.set(k("posting"))} />
                <span>
                  <strong>{t(`posting.${p}` as Key)}</strong>
                  <span class="small block">{t(`posting.${p}.what` as Key)}</span>
                </span>
              </label>
            ))}
          </fieldset>
        </>
      )}
      <FormError message={form.formError} />
      {created && <p class="notice" role="status">{t("addresses.created", { address: created })}</p>}
      <div class="buttons">
        <Submit busy={form.busy} label={current ? t("common.save") : kind === "alias" ? t("addresses.create_alias") : t("addresses.create_group")} />
        {onCancel && <button type="button" onClick={onCancel}>{t("common.cancel")}</button>}
      </div>
    </form>
  );
}

/** A group's members: a checkbox per account, with a search field when there are many. */
function Members({ id, accounts, loading, chosen, onChange, error }: {
  id: string;
  accounts: Account[];
  loading: boolean;
  chosen: string[];
  onChange: (members: string[]) => void;
  error: string | undefined;
}) {
  const [filter, setFilter] = useState("");
  const needle = filter.trim().toLowerCase();
  const shown = needle
    ? accounts.filter((a) => a.address.toLowerCase().includes(needle) || (a.display_name ?? "").toLowerCase().includes(needle))
    : accounts;
  const toggle = (account: string) => onChange(chosen.includes(account) ? chosen.filter((x) => x !== account) : [...chosen, account]);
  return (
    <fieldset id={id} tabIndex={-1} class={`members${error ? " invalid" : ""}`} aria-describedby={`${id}-hint${error ? ` ${id}-error` : ""}`}>
      <legend>{t("addresses.members")}</legend>
      <p class="hint" id={`${id}-hint`}>{t("addresses.members_hint")}</p>
      {accounts.length > FILTER_FROM && (
        <Field id={`${id}-filter`} label={t("addresses.members_filter")} type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} autoComplete="off" />
      )}
      {loading ? (
        <p class="loading">{t("common.loading")}</p>
      ) : accounts.length === 0 ? (
        <p class="small">{t("addresses.no_accounts")}</p>
      ) : (
        <div class="checklist">
          {shown.length === 0 && <p class="small">{t("addresses.members_none_found")}</p>}
          {shown.map((a) => (
            <label class="choice" key={a.id}>
              <input type="checkbox" checked={chosen.includes(a.id)} onChange={() => toggle(a.id)} />
              <span>
                {a.address}
                {a.display_name && <span class="small"> · {a.display_name}</span>}
              </span>
            </label>
          ))}
        </div>
      )}
      <p class="small" aria-live="polite">{t("addresses.members_chosen", { count: formatNumber(chosen.length) })}</p>
      <p class="error" id={`${id}-error`} role={error ? "alert" : undefined}>{error ?? ""}</p>
    </fieldset>
  );
}
