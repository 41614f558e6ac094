// The users' app: brand, sign-in and signup for visitors; for a signed-in
// person their folders, the message list, a message, compose and settings.
// The path is the state (/mail/{mailbox}/{message}, /compose, /settings).
import { useEffect, useState } from "preact/hooks";
import { type Session, currentSession, onSessionChange, setReauthHandler, setSession } from "../api";
import { type Brand, productName, useBrand } from "../brand";
import { formatNumber, t, useLanguage } from "../i18n";
import { match, navigate, onLinkClick, usePath } from "../router";
import { LanguageSwitch, Reauth } from "../shell";
import { ErrorBox, useLoad } from "../ui";
import { Activate } from "../views/activate";
import { SignIn } from "../views/signin";
import { type Mailbox, depth, findMailbox, loadMailboxes, mailboxLabel, mailboxSlug } from "./folders";
import { forgetIndexKey } from "./header-index";
import { forgetKey } from "./keyring";
import { forgetReadings } from "./messages";
import { Compose } from "./views/compose";
import { MessageList } from "./views/list";
import { MessageView } from "./views/message";
import { Settings } from "./views/settings";
import { Signup, SignupWaiting } from "./views/signup";

function Logo({ brand }: { brand: Brand | null }) {
  const name = productName(brand);
  return (
    <a href="/" class="brand">
      {brand?.logo_url ? <img src={brand.logo_url} alt="" width={32} height={32} /> : <span class="mark" aria-hidden="true" />}
      <span class="name">{name || t("mail.app_title")}</span>
    </a>
  );
}

/** Pages anyone may open: sign-in, signup, the waiting line, an activation link. */
function Visitor({ brand, path }: { brand: Brand | null; path: string }) {
  const name = productName(brand);
  const [address, setAddress] = useState("");
  let page;
  if (path === "/signup") page = <Signup brand={brand} />;
  else if (path === "/signup/wait") page = <SignupWaiting onAdmitted={(a) => setAddress(a)} />;
  else if (path === "/activate") page = <Activate />;
  else
    page = (
      <SignIn brand={brand} heading={name ? t("mail.signin_brand", { name }) : t("mail.signin")} initialAddress={address}>
        <p class="signin-more">
          {t("mail.no_account")} <a href="/signup">{t("mail.signup_link")}</a>
        </p>
      </SignIn>
    );
  return (
    <div class="signin-shell" onClick={onLinkClick}>
      <header class="topbar plain">
        <Logo brand={brand} />
        <LanguageSwitch />
      </header>
      <main id="main">{page}</main>
    </div>
  );
}

function FolderNav({ boxes, current }: { boxes: Mailbox[] | undefined; current: string | null }) {
  if (!boxes) return <p class="loading" role="status">{t("common.loading")}</p>;
  return (
    <ul class="folders">
      {boxes.map((m) => (
        <li key={m.id} style={{ paddingLeft: `${depth(m) * 0.9}rem` }}>
          <a href={`/mail/${mailboxSlug(m)}`} aria-current={current === m.id ? "page" : undefined}>
            <span class="folder-name">{mailboxLabel(m)}</span>
            {m.counts.unseen > 0 && (
              <>
                <span class="count" aria-hidden="true">{formatNumber(m.counts.unseen)}</span>
                <span class="visually-hidden">, {t("mail.unread_count", { count: formatNumber(m.counts.unseen) })}</span>
              </>
            )}
          </a>
        </li>
      ))}
    </ul>
  );
}

function SignedIn({ session, path, brand }: { session: Session; path: string; brand: Brand | null }) {
  const accountId = session.accountId;
  const [menuOpen, setMenuOpen] = useState(false);
  const boxes = useLoad(() => (accountId ? loadMailboxes(accountId) : Promise.resolve([])), [accountId]);
  useEffect(() => setMenuOpen(false), [path]);
  // New mail shows up by itself: the folders are asked again while the page is in view,
  // and a folder's list reloads when its mailbox changed (src/mail/views/list.tsx).
  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") boxes.reload();
    }, 30_000);
    return () => clearInterval(timer);
  }, [accountId]);

  const signOut = () => {
    setSession(null);
    navigate("/");
  };

  let params: Record<string, string> | null;
  let currentBox: Mailbox | undefined;
  let page;
  if (!accountId) {
    page = (
      <section>
        <h1 id="page-title" tabIndex={-1}>{t("mail.no_mailbox_title")}</h1>
        <p>{t("mail.no_mailbox")}</p>
      </section>
    );
  } else if (path === "/compose") {
    page = <Compose session={session} accountId={accountId} />;
  } else if (path === "/settings") {
    page = <Settings session={session} accountId={accountId} />;
  } else if ((params = match("/mail/:mailbox/:message", path)) && boxes.data) {
    currentBox = findMailbox(boxes.data, params.mailbox!);
    // Keyed by the message: nothing of one (remote content allowed, say) carries over to the next.
    page = <MessageView key={params.message!} session={session} messageId={params.message!} mailbox={currentBox} boxes={boxes.data} onChange={boxes.reload} />;
  } else if ((params = match("/mail/:mailbox", path)) && boxes.data) {
    currentBox = findMailbox(boxes.data, params.mailbox!);
    page = currentBox ? (
      <MessageList key={currentBox.id} session={session} accountId={accountId} mailbox={currentBox} onChange={boxes.reload} />
    ) : (
      <NotFound />
    );
  } else if (boxes.error) {
    page = <ErrorBox problem={boxes.error} retry={boxes.reload} />;
  } else if (!boxes.data) {
    page = <p class="loading" role="status">{t("common.loading")}</p>;
  } else {
    page = <NotFound />;
  }

  return (
    <div class="shell mail-shell" onClick={onLinkClick}>
      <a class="skip" href="#main">{t("nav.skip")}</a>
      <header class="topbar">
        <Logo brand={brand} />
        <button type="button" class="menu-toggle" aria-expanded={menuOpen ? "true" : "false"} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>
          {t("mail.folders")}
        </button>
        <div class="who">
          <span class="address">{session.username}</span>
          <LanguageSwitch />
          <button type="button" class="link" onClick={signOut}>{t("nav.signout")}</button>
        </div>
      </header>
      <nav id="nav" class={menuOpen ? "open" : ""} aria-label={t("mail.folders")}>
        <p>
          <a class="button primary compose-button" href="/compose" aria-current={path === "/compose" ? "page" : undefined}>{t("mail.compose")}</a>
        </p>
        <FolderNav boxes={boxes.data} current={currentBox?.id ?? null} />
        <ul class="folders secondary">
          <li>
            <a href="/settings" aria-current={path === "/settings" ? "page" : undefined}>{t("mail.settings")}</a>
          </li>
        </ul>
      </nav>
      <main id="main">{page}</main>
    </div>
  );
}

function NotFound() {
  return (
    <section>
      <h1 id="page-title" tabIndex={-1}>{t("notfound.title")}</h1>
      <p>{t("notfound.body")}</p>
      <p><a href="/mail/inbox">{t("folder.inbox")}</a></p>
    </section>
  );
}

export function MailApp() {
  useLanguage();
  const brand = useBrand();
  const path = usePath();
  const [session, setCurrent] = useState(currentSession());
  const [reauth, setReauth] = useState<{ expired: Session; resolve: (s: Session | null) => void } | null>(null);

  useEffect(
    () =>
      onSessionChange(() => {
        const next = currentSession();
        if (!next) {
          forgetKey();
          forgetIndexKey();
          forgetReadings();
        }
        setCurrent(next);
      }),
    [],
  );
  useEffect(() => {
    setReauthHandler((expired) => new Promise((resolve) => setReauth({ expired, resolve })));
  }, []);
  // A signed-in person lands in their inbox; a visitor on a mail path is asked to sign in.
  useEffect(() => {
    if (session && (path === "/" || path === "/signup" || path === "/signup/wait")) {
      history.replaceState(null, "", "/mail/inbox");
      window.dispatchEvent(new PopStateEvent("popstate"));
    }
  }, [session, path]);
  useEffect(() => {
    const name = productName(brand);
    document.title = name ? `${t("mail.app_title")} · ${name}` : t("mail.app_title");
    requestAnimationFrame(() => document.getElementById("page-title")?.focus({ preventScroll: true }));
  }, [brand, path, session?.accountId]);

  if (!session || path === "/activate") return <Visitor brand={brand} path={path} />;
  return (
    <>
      <SignedIn session={session} path={path} brand={brand} />
      {reauth && (
        <Reauth
          expired={reauth.expired}
          done={(s) => {
            reauth.resolve(s);
            setReauth(null);
          }}
        />
      )}
    </>
  );
}
