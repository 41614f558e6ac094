// The shell: brand, sign-in, navigation for the signed-in role, the page for
// the current path, and the dialog that renews an expired session in place.
import { useEffect, useState } from "preact/hooks";
import { type Role, type Session, currentSession, onSessionChange, setReauthHandler, setSession } from "./api";
import { type Brand, productName, useBrand } from "./brand";
import { type Key, t, useLanguage } from "./i18n";
import { match, navigate, onLinkClick, usePath } from "./router";
import { LanguageSwitch, Reauth } from "./shell";
import { Activate } from "./views/activate";
import { SignIn } from "./views/signin";
import { Account } from "./views/account";
import { Overview } from "./views/overview";
import { Tenants, NewTenant } from "./views/tenants";
import { TenantPage, type Tab } from "./views/tenant";
import { Plans } from "./views/plans";
import { Certificates, Pool, Queue, Sites } from "./views/operator";
import { Usage } from "./views/usage";

interface NavItem {
  href: string;
  label: Key;
}

export function navFor(session: Session): NavItem[] {
  const own = (tab: Tab) => `/tenants/${session.tenantId}/${tab}`;
  const byRole: Record<Role, NavItem[]> = {
    operator: [
      { href: "/", label: "nav.overview" },
      { href: "/tenants", label: "nav.tenants" },
      { href: "/plans", label: "nav.plans" },
      { href: "/pool", label: "nav.pool" },
      { href: "/sites", label: "nav.sites" },
      { href: "/certificates", label: "nav.certificates" },
      { href: "/queue", label: "nav.queue" },
      { href: own("audit"), label: "nav.audit" },
      { href: "/account", label: "nav.account" },
    ],
    reseller_admin: [
      { href: "/", label: "nav.overview" },
      { href: "/tenants", label: "nav.customers" },
      { href: "/tenants/new", label: "nav.onboard" },
      { href: "/usage", label: "nav.usage" },
      { href: own("branding"), label: "nav.branding" },
      { href: own("billing"), label: "nav.billing" },
      { href: own("keys"), label: "nav.keys" },
      { href: own("audit"), label: "nav.audit" },
      { href: "/account", label: "nav.account" },
    ],
    tenant_admin: [
      { href: "/", label: "nav.overview" },
      { href: own("domains"), label: "nav.domains" },
      { href: own("accounts"), label: "nav.accounts" },
      { href: own("addresses"), label: "nav.addresses" },
      { href: own("policy"), label: "nav.policy" },
      { href: own("filters"), label: "nav.filters" },
      { href: own("branding"), label: "nav.branding" },
      { href: own("billing"), label: "nav.billing" },
      { href: own("keys"), label: "nav.keys" },
      { href: own("audit"), label: "nav.audit" },
      { href: own("data"), label: "nav.data" },
      { href: "/account", label: "nav.account" },
    ],
    user: [],
  };
  return byRole[session.role];
}

function Page({ session, path }: { session: Session; path: string }) {
  const role = session.role;
  const operator = role === "operator";
  const parent = operator || role === "reseller_admin";
  let params;
  if (path === "/") return <Overview session={session} />;
  if (path === "/account") return <Account session={session} />;
  if (parent && path === "/tenants") return <Tenants session={session} />;
  if (parent && path === "/tenants/new") return <NewTenant session={session} />;
  if ((params = match("/tenants/:id", path))) return <TenantPage session={session} tenantId={params.id!} tab="overview" />;
  if ((params = match("/tenants/:id/:tab", path))) return <TenantPage session={session} tenantId={params.id!} tab={params.tab as Tab} />;
  if (operator && path === "/plans") return <Plans />;
  if (operator && path === "/pool") return <Pool />;
  if (operator && path === "/sites") return <Sites />;
  if (operator && path === "/certificates") return <Certificates />;
  if (operator && path === "/queue") return <Queue />;
  if (parent && path === "/usage") return <Usage session={session} />;
  return (
    <section>
      <h1 id="page-title" tabIndex={-1}>{t("notfound.title")}</h1>
      <p>{t("notfound.body")}</p>
      <p><a href="/admin/">{t("nav.overview")}</a></p>
    </section>
  );
}

function Logo({ brand }: { brand: Brand | null }) {
  const name = productName(brand);
  return (
    <a href="/admin/" class="brand">
      {brand?.logo_url ? <img src={brand.logo_url} alt="" width={32} height={32} /> : <span class="mark" aria-hidden="true" />}
      <span class="name">{name}</span>
    </a>
  );
}

export function App() {
  useLanguage();
  const brand = useBrand();
  const path = usePath();
  const [session, setCurrent] = useState(currentSession());
  const [reauth, setReauth] = useState<{ expired: Session; resolve: (s: Session | null) => void } | null>(null);
  const [menuOpen, setMenuOpen] = useState(false);

  useEffect(() => onSessionChange(() => setCurrent(currentSession())), []);
  useEffect(() => {
    setReauthHandler((expired) => new Promise((resolve) => setReauth({ expired, resolve })));
  }, []);
  useEffect(() => {
    const name = productName(brand);
    document.title = name ? `${t("app.title")} · ${name}` : t("app.title");
    setMenuOpen(false);
    // Move focus to the new page's heading, for keyboard and screen-reader users.
    requestAnimationFrame(() => document.getElementById("page-title")?.focus({ preventScroll: true }));
  }, [brand, path, session?.role]);

  const signOut = () => {
    setSession(null);
    navigate("/");
  };

  // An activation link opens the same way for anyone, signed in or not.
  if (!session || path === "/activate") {
    return (
      <div class="signin-shell" onClick={onLinkClick}>
        <header class="topbar plain">
          <Logo brand={brand} />
          <LanguageSwitch />
        </header>
        <main id="main">
          {path === "/activate" ? <Activate /> : <SignIn brand={brand} />}
        </main>
      </div>
    );
  }

  const items = navFor(session);
  return (
    <div class="shell" onClick={onLinkClick}>
      <a class="skip" href="#main">{t("nav.skip")}</a>
      <header class="topbar">
        <Logo brand={brand} />
        <button
          type="button"
          class="menu-toggle"
          aria-expanded={menuOpen ? "true" : "false"}
          aria-controls="nav"
          onClick={() => setMenuOpen(!menuOpen)}
        >
          {t("nav.menu")}
        </button>
        <div class="who">
          <span class="role">{t(`role.${session.role}` as Key)}</span>
          <span class="address">{session.username}</span>
          <LanguageSwitch />
          <button type="button" class="link" onClick={signOut}>{t("nav.signout")}</button>
        </div>
      </header>
      <nav id="nav" class={menuOpen ? "open" : ""} aria-label={t("nav.label")}>
        <ul>
          {items.map((item) => {
            const current = item.href === "/" ? path === "/" : path === item.href || path.startsWith(item.href + "/");
            return (
              <li key={item.href}>
                <a href={`/admin${item.href}`} aria-current={current ? "page" : undefined}>{t(item.label)}</a>
              </li>
            );
          })}
        </ul>
      </nav>
      <main id="main">
        {session.role === "user" ? (
          <section>
            <h1 id="page-title" tabIndex={-1}>{t("user.title")}</h1>
            <p>{t("user.body")}</p>
          </section>
        ) : (
          <Page session={session} path={path} />
        )}
      </main>
      {reauth && (
        <Reauth
          expired={reauth.expired}
          done={(s) => {
            reauth.resolve(s);
            setReauth(null);
          }}
        />
      )}
    </div>
  );
}
