//! The admin app at `/admin/` and the users' app at `/`, against the real
//! API on both backends: their files with their types and caching,
//! `index.html` for each app's own pages with the Host's brand in its title
//! (the operator's, or a tenant's through its verified hostname), a
//! security policy on every answer, no way out of the build folder, a clear
//! 503 while an app is not built, and the server's own paths (API,
//! well-known documents) never taken for a page of the users' app.

mod support;

use std::path::Path;

use serde_json::json;
use support::TestApp;
use tenants::{Backend, on_both_backends};

const INDEX: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Caliop admin</title>\
    <script type=\"module\" src=\"/admin/assets/app.js\"></script></head><body><div id=\"app\"></div></body></html>\n";
const APP_JS: &str = "console.log('admin app');\n";
const SECRET: &str = "SECRET-OUTSIDE-THE-BUILD";
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self' 'wasm-unsafe-eval'; \
    connect-src 'self'; frame-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'";
const NOT_BUILT: &str = "the admin app is not built: run `npm ci && npm run build` in web-admin/ (./scripts/serve does it)";
const MAIL_NOT_BUILT: &str = "the users' app is not built: run `npm ci && npm run build` in web-admin/ (./scripts/serve does it)";
const MAIL_CSP: &str = "default-src 'self'; img-src 'self' data: blob: https:; style-src 'self' 'unsafe-inline'; \
    script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; connect-src 'self'; frame-src 'self' blob: data:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";
const MAIL_INDEX: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Mail</title>\
    <script type=\"module\" src=\"/assets/mail.js\"></script></head><body><div id=\"app\"></div></body></html>\n";
const MAIL_JS: &str = "console.log('users app');\n";

/// A build in `root/dist`, with secrets beside it (and a link to one inside) that must never be served.
fn build(root: &Path) -> std::path::PathBuf {
    let dist = root.join("dist");
    std::fs::create_dir_all(dist.join("assets")).unwrap();
    std::fs::write(dist.join("index.html"), INDEX).unwrap();
    std::fs::write(dist.join("assets/app.js"), APP_JS).unwrap();
    std::fs::write(
        dist.join("favicon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    for outside in ["secret.txt", "Cargo.toml", "secret"] {
        std::fs::write(root.join(outside), SECRET).unwrap();
    }
    std::os::unix::fs::symlink(root.join("secret.txt"), dist.join("assets/leak.txt")).unwrap();
    dist
}

async fn app_serving(backend: Backend, dir: &Path) -> TestApp {
    support::spawn_with(
        backend,
        api::ApiConfig {
            admin_assets_dir: dir.to_owned(),
            ..support::api_config()
        },
    )
    .await
}

async fn get(app: &TestApp, path: &str, host: Option<&str>) -> support::Reply {
    let mut request = app.http.get(format!("{}{path}", app.base));
    if let Some(host) = host {
        request = request.header("host", host);
    }
    app.raw(request).await
}

fn header<'a>(reply: &'a support::Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn assert_protected(reply: &support::Reply) {
    assert_eq!(header(reply, "content-security-policy"), CSP, "{reply:?}");
    assert_eq!(header(reply, "x-content-type-options"), "nosniff");
    assert_eq!(header(reply, "referrer-policy"), "no-referrer");
}

/// The title of an HTML page.
fn title(reply: &support::Reply) -> &str {
    let html = reply.text();
    let start = html.find("<title>").expect("a title") + "<title>".len();
    &html[start..start + html[start..].find("</title>").expect("a closed title")]
}

/// Sends `target` as it is (no client normalises it) and returns the status and the whole answer.
async fn raw_get(app: &TestApp, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!("GET {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

on_both_backends!(
    the_app_is_served_with_its_types_caching_and_policy,
    the_title_shows_the_brand_of_the_host,
    no_path_leaves_the_build,
    an_unbuilt_app_says_how_to_build_it,
    the_users_app_is_served_at_the_root_in_the_brand_of_the_host,
);

/// Both apps' builds: the admin app's in `root/dist`, the users' app's in `root/dist-mail`.
async fn both_apps(backend: Backend, root: &Path) -> TestApp {
    let admin = build(root);
    let mail = root.join("dist-mail");
    std::fs::create_dir_all(mail.join("assets")).unwrap();
    std::fs::write(mail.join("index.html"), MAIL_INDEX).unwrap();
    std::fs::write(mail.join("assets/mail.js"), MAIL_JS).unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), mail.join("assets/leak.txt")).unwrap();
    support::spawn_with(
        backend,
        api::ApiConfig {
            admin_assets_dir: admin,
            mail_assets_dir: mail,
            ..support::api_config()
        },
    )
    .await
}

/// The users' app owns `/` and every page outside the server's own paths;
/// the API, the admin app and the well-known documents stay the server's,
/// answered as before. Its policy lets workers run (the signup's proof of
/// work). On a tenant's verified hostname it wears that tenant's brand.
async fn the_users_app_is_served_at_the_root_in_the_brand_of_the_host(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let app = both_apps(backend, scratch.path()).await;
    let mail_protected = |reply: &support::Reply| {
        assert_eq!(
            header(reply, "content-security-policy"),
            MAIL_CSP,
            "{reply:?}"
        );
        assert_eq!(header(reply, "x-content-type-options"), "nosniff");
    };
    for page in [
        "/",
        "/signup",
        "/mail/INBOX",
        "/mail/INBOX/0b8f",
        "/settings/",
    ] {
        let reply = get(&app, page, None).await;
        assert_eq!(reply.status.as_u16(), 200, "{page}: {reply:?}");
        assert!(
            reply.text().contains("/assets/mail.js"),
            "{page}: {reply:?}"
        );
        assert_eq!(title(&reply), "Caliop", "{page}");
        assert_eq!(header(&reply, "cache-control"), "no-cache");
        mail_protected(&reply);
    }
    let script = get(&app, "/assets/mail.js", None).await;
    assert_eq!((script.status.as_u16(), script.text()), (200, MAIL_JS));
    assert_eq!(
        header(&script, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    mail_protected(&script);
    let missing = get(&app, "/assets/missing.js", None).await;
    assert!(
        missing.problem(404).contains("assets/missing.js"),
        "{missing:?}"
    );

    // The server's own paths are never the app.
    let admin = get(&app, "/admin/", None).await;
    assert!(admin.text().contains("/admin/assets/app.js"), "{admin:?}");
    assert_protected(&admin);
    assert_eq!(
        get(&app, "/v1/nothing-here", None).await.problem(404),
        "route not found"
    );
    for path in ["/.well-known/nothing", "/metrics/x", "/docs/x"] {
        let reply = get(&app, path, None).await;
        assert_eq!(reply.status.as_u16(), 404, "{path}: {reply:?}");
        assert!(!reply.text().contains("mail.js"), "{path}: {reply:?}");
    }
    let health = get(&app, "/healthz", None).await;
    assert_eq!(health.status.as_u16(), 200, "{health:?}");
    let posted = app.raw(app.http.post(format!("{}/signup", app.base))).await;
    assert!(!posted.text().contains("mail.js"), "{posted:?}");
    assert!(posted.status.is_client_error(), "{posted:?}");

    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/leak.txt",
        "/assets/..%2f..%2fsecret.txt",
    ] {
        let (status, answer) = raw_get(&app, target).await;
        assert!(!answer.contains(SECRET), "{target} leaked: {answer}");
        assert!(status == 404 || status == 400, "{target}: {answer}");
    }

    // A tenant's verified hostname: its brand; anything else: the operator's.
    let acme = app.enterprise("acme.test", 5).await;
    app.name_brand(&acme.tenant_id, &acme.admin_token, "Acme Mail")
        .await;
    let host = app.add_hostname(&acme, "webmail.acme.test").await;
    assert_eq!(
        title(&get(&app, "/", Some("webmail.acme.test")).await),
        "Caliop"
    );
    app.prove_hostname(&acme, &host).await;
    assert_eq!(
        title(&get(&app, "/", Some("webmail.acme.test")).await),
        "Acme Mail"
    );
    assert_eq!(
        title(&get(&app, "/mail/INBOX", Some("webmail.acme.test")).await),
        "Acme Mail"
    );
    assert_eq!(
        title(&get(&app, "/", Some("other.example")).await),
        "Caliop"
    );
}

async fn the_app_is_served_with_its_types_caching_and_policy(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let app = app_serving(backend, &build(scratch.path())).await;

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (from, to) in [
        ("/admin", "/admin/"),
        ("/admin?tenant=abc", "/admin/?tenant=abc"),
    ] {
        let moved = app
            .raw(no_redirects.get(format!("{}{from}", app.base)))
            .await;
        assert_eq!(moved.status.as_u16(), 308, "{moved:?}");
        assert_eq!(header(&moved, "location"), to);
        assert_protected(&moved);
    }

    let index = get(&app, "/admin/", None).await;
    assert_eq!(index.status.as_u16(), 200, "{index:?}");
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    assert!(
        index
            .text()
            .contains("<script type=\"module\" src=\"/admin/assets/app.js\">")
    );
    assert_protected(&index);

    let script = get(&app, "/admin/assets/app.js", None).await;
    assert_eq!(script.status.as_u16(), 200);
    assert_eq!(script.text(), APP_JS);
    assert_eq!(script.content_type, "text/javascript; charset=utf-8");
    assert_eq!(
        header(&script, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_protected(&script);

    let icon = get(&app, "/admin/favicon.svg", None).await;
    assert_eq!(
        (icon.status.as_u16(), icon.content_type.as_str()),
        (200, "image/svg+xml")
    );
    assert_eq!(
        header(&icon, "cache-control"),
        "no-cache",
        "only hashed assets are cached for good"
    );

    // The app's own pages are index.html, the app routes them in the browser.
    for page in [
        "/admin/tenants/abc",
        "/admin/tenants/abc/",
        "/admin/index.html",
    ] {
        let fallback = get(&app, page, None).await;
        assert_eq!(fallback.status.as_u16(), 200, "{page}: {fallback:?}");
        assert_eq!(fallback.content_type, "text/html; charset=utf-8", "{page}");
        assert_eq!(title(&fallback), "Caliop", "{page}");
        assert_protected(&fallback);
    }
    // A file that is not there is not the app.
    let missing = get(&app, "/admin/assets/missing.js", None).await;
    assert!(
        missing.problem(404).contains("assets/missing.js"),
        "{missing:?}"
    );
    assert_protected(&missing);

    let spec = serde_json::to_value(api::openapi()).unwrap();
    assert!(
        spec["paths"]
            .as_object()
            .unwrap()
            .keys()
            .all(|p| !p.starts_with("/admin")),
        "the app is not part of the API"
    );
}

async fn the_title_shows_the_brand_of_the_host(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let app = app_serving(backend, &build(scratch.path())).await;
    assert_eq!(
        title(&get(&app, "/admin/", None).await),
        "Caliop",
        "Caliop's own brand by default"
    );
    let operator = app.state.operator_tenant;
    app.send(
        "PUT",
        &format!("/v1/tenants/{operator}/branding"),
        Some(&app.operator_token),
        Some(json!({"product_name": "Ops & <Co> \"Mail\""})),
    )
    .await
    .ok(200);
    let escaped = "Ops &amp; &lt;Co&gt; &quot;Mail&quot;";
    assert_eq!(title(&get(&app, "/admin/", None).await), escaped);

    let acme = app.enterprise("acme.test", 5).await;
    app.name_brand(&acme.tenant_id, &acme.admin_token, "Acme Secure Mail")
        .await;
    let host = app.add_hostname(&acme, "mail-admin.acme.test").await;
    // Not proven yet: the operator's brand.
    assert_eq!(
        title(&get(&app, "/admin/", Some("mail-admin.acme.test")).await),
        escaped
    );
    app.prove_hostname(&acme, &host).await;

    for (path, host, expected) in [
        ("/admin/", "mail-admin.acme.test", "Acme Secure Mail"),
        (
            "/admin/accounts",
            "mail-admin.acme.test:8443",
            "Acme Secure Mail",
        ),
        ("/admin/", "acme.test", escaped),
        ("/admin/", "unknown.example", escaped),
    ] {
        let page = get(&app, path, Some(host)).await;
        assert_eq!(page.status.as_u16(), 200, "{host}{path}: {page:?}");
        assert_eq!(title(&page), expected, "{host}{path}");
        assert_protected(&page);
    }
}

async fn no_path_leaves_the_build(backend: Backend) {
    let scratch = tempfile::tempdir().unwrap();
    let app = app_serving(backend, &build(scratch.path())).await;
    for target in [
        "/admin/../Cargo.toml",
        "/admin/../secret.txt",
        "/admin/assets/../../secret.txt",
        "/admin/%2e%2e/Cargo.toml",
        "/admin/%2E%2E/secret.txt",
        "/admin/%2e%2e%2fsecret.txt",
        "/admin/assets/..%2f..%2fsecret",
        "/admin/assets/..%2f..%2fsecret.txt",
        "/admin/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/admin/..%5csecret.txt",
        "/admin/%252e%252e/secret.txt",
        "/admin//etc/passwd",
        "/admin/%2fetc%2fpasswd",
        "/admin/assets/leak.txt",
        "/admin/./assets/app.js",
        "/admin/assets/app.js%00.png",
    ] {
        let (status, answer) = raw_get(&app, target).await;
        assert!(
            !answer.contains(SECRET) && !answer.contains("root:"),
            "{target} leaked: {answer}"
        );
        assert!(status == 404 || status == 400, "{target}: {answer}");
        if status == 404 {
            assert!(
                answer.contains("application/problem+json"),
                "{target}: {answer}"
            );
        }
    }
    // The same through a client, which normalises what it can.
    for path in [
        "/admin/../secret.txt",
        "/admin/%2e%2e/secret.txt",
        "/admin/assets/..%2f..%2fsecret",
    ] {
        let reply = get(&app, path, None).await;
        assert!(!reply.text().contains(SECRET), "{path}: {reply:?}");
        assert_ne!(reply.status.as_u16(), 200, "{path}: {reply:?}");
    }
}

async fn an_unbuilt_app_says_how_to_build_it(backend: Backend) {
    let app = support::spawn(backend).await;
    // The users' app: its root says how to build it; another page is no route.
    let root = get(&app, "/", None).await;
    assert_eq!(root.problem(503), MAIL_NOT_BUILT);
    assert_eq!(
        get(&app, "/mail/INBOX", None).await.problem(404),
        "route not found"
    );
    for path in ["/admin/", "/admin/tenants/abc", "/admin/assets/app.js"] {
        let reply = get(&app, path, None).await;
        assert_eq!(reply.problem(503), NOT_BUILT, "{path}");
        assert_protected(&reply);
    }
    // A folder without its index.html is not a build either.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(scratch.path().join("assets")).unwrap();
    std::fs::write(scratch.path().join("assets/app.js"), APP_JS).unwrap();
    let half = app_serving(backend, scratch.path()).await;
    assert_eq!(get(&half, "/admin/", None).await.problem(503), NOT_BUILT);
    assert_eq!(
        get(&half, "/admin/assets/app.js", None).await.problem(503),
        NOT_BUILT
    );
}
