//! The two single-page apps: the admin app (built into `admin_assets_dir`)
//! at `/admin/`, and the users' app (signup, mail, their account; built
//! into `mail_assets_dir`) at `/`. Each serves its files, and `index.html`
//! for any other page of it (the app routes in the browser), with the brand
//! of the Host in its `<title>`. Outside the REST API and its OpenAPI
//! document: what the API, WKD, autoconfig and metrics answer is theirs.
//! Only files inside a build are ever read: a path that is not a plain
//! relative one answers 404.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::AppState;
use crate::problem::Problem;
use crate::routes::branding::{caliop_brand, tenant_for_host};

/// One of the two apps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum App {
    Admin,
    Mail,
}

impl App {
    fn prefix(self) -> &'static str {
        match self {
            App::Admin => "/admin/",
            App::Mail => "/",
        }
    }

    fn dir(self, state: &AppState) -> &Path {
        match self {
            App::Admin => &state.config.admin_assets_dir,
            App::Mail => &state.config.mail_assets_dir,
        }
    }

    fn name(self) -> &'static str {
        match self {
            App::Admin => "the admin app",
            App::Mail => "the users' app",
        }
    }

    fn not_built(self) -> String {
        format!(
            "{} is not built: run `npm ci && npm run build` in web-admin/ (./scripts/serve does it)",
            self.name()
        )
    }

    /// What every answer of the app carries: it loads only its own files,
    /// runs workers only of its own (the signup's proof of work), talks
    /// only to this origin, and may frame only itself (previews, and mail
    /// in a sandboxed frame). The users' app may show remote images: a
    /// message's frame has its own stricter policy until the reader lets
    /// them in.
    fn policy(self) -> &'static str {
        match self {
            App::Admin => ADMIN_POLICY,
            App::Mail => MAIL_POLICY,
        }
    }
}

const ADMIN_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
     script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; frame-src 'self' blob: data:; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'self'";

const MAIL_POLICY: &str = "default-src 'self'; img-src 'self' data: blob: https:; style-src 'self' 'unsafe-inline'; \
     script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; connect-src 'self'; frame-src 'self' blob: data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'";

/// Paths that are never the users' app: the API, the admin app, the
/// well-known documents, the API's documentation and the metrics.
const NOT_THE_APP: [&str; 6] = [
    "/v1/",
    "/admin",
    "/.well-known/",
    "/docs",
    "/openapi.json",
    "/metrics",
];

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/admin", get(to_app))
        .route("/admin/", get(admin))
        .route("/admin/{*path}", get(admin))
        .layer(axum::middleware::map_response(|r| protect(App::Admin, r)))
        .merge(
            axum::Router::new()
                .route("/", get(mail))
                .layer(axum::middleware::map_response(|r| protect(App::Mail, r))),
        )
}

/// What no route answers: a page of the users' app when it is one (a GET
/// outside the server's own paths, with the app built), else a 404.
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let mine = matches!(*request.method(), Method::GET | Method::HEAD)
        && !NOT_THE_APP.iter().any(|p| path.starts_with(p))
        && is_built(App::Mail, &state).await;
    if !mine {
        return Problem::not_found("route").into_response();
    }
    protect(App::Mail, serve(App::Mail, &state, request).await).await
}

async fn is_built(app: App, state: &AppState) -> bool {
    tokio::fs::metadata(app.dir(state).join("index.html"))
        .await
        .is_ok_and(|m| m.is_file())
}

async fn protect(app: App, mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(app.policy()),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `/admin` is the app's folder: relative links need the slash.
async fn to_app(uri: Uri) -> Redirect {
    let prefix = App::Admin.prefix();
    match uri.query() {
        Some(query) => Redirect::permanent(&format!("{prefix}?{query}")),
        None => Redirect::permanent(prefix),
    }
}

async fn admin(State(state): State<AppState>, request: Request) -> Response {
    serve(App::Admin, &state, request).await
}

async fn mail(State(state): State<AppState>, request: Request) -> Response {
    serve(App::Mail, &state, request).await
}

async fn serve(app: App, state: &AppState, request: Request) -> Response {
    let dir = app.dir(state);
    let index = dir.join("index.html");
    if !is_built(app, state).await {
        return Problem::unavailable(app.not_built()).into_response();
    }
    let raw = request
        .uri()
        .path()
        .strip_prefix(app.prefix())
        .unwrap_or_default();
    // `pages/` is the page `pages`, never a file.
    let (raw, page) = match raw.strip_suffix('/') {
        Some(folder) if !folder.is_empty() => (folder, true),
        _ => (raw, false),
    };
    let Some(relative) = relative_path(raw) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("`{raw}` is not a file of {}", app.name()),
        )
        .into_response();
    };
    if page || relative.is_empty() || relative == "index.html" {
        return index_page(app, state, &index, request.headers()).await;
    }
    match read_inside(dir, &relative).await {
        Some(bytes) => {
            let cache = if relative.starts_with("assets/") {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            (
                [
                    (header::CONTENT_TYPE, content_type(&relative)),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        // A page of the app (no extension) is the app's to route.
        None if extension(&relative).is_none() => {
            index_page(app, state, &index, request.headers()).await
        }
        None => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{} has no file `{relative}`", app.name()),
        )
        .into_response(),
    }
}

/// `index.html` with the product name of the Host's brand as its title.
async fn index_page(app: App, state: &AppState, index: &Path, headers: &HeaderMap) -> Response {
    let html = match tokio::fs::read(index).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Problem::unavailable(app.not_built()).into_response();
        }
        Err(e) => {
            return Problem::internal(format!("reading {}: {e}", index.display())).into_response();
        }
    };
    let brand = match tenant_for_host(state, headers).await {
        Ok(tenant) => state
            .store
            .brand(tenant, &caliop_brand())
            .await
            .map_err(Problem::from),
        Err(problem) => Err(problem),
    };
    let name = match brand {
        Ok(brand) => brand
            .product_name
            .or(caliop_brand().product_name)
            .unwrap_or_default(),
        Err(problem) => return problem.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        with_title(&html, &name),
    )
        .into_response()
}

/// Replaces the text of the first `<title>…</title>` with `title`, escaped.
fn with_title(html: &str, title: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let Some(open) = lower.find("<title>") else {
        return html.to_owned();
    };
    let start = open + "<title>".len();
    let Some(length) = lower[start..].find("</title>") else {
        return html.to_owned();
    };
    format!(
        "{}{}{}",
        &html[..start],
        mail::templates::escape(title),
        &html[start + length..]
    )
}

/// The percent-decoded path below the app's prefix, if it is a plain relative one:
/// segments of printable text, none empty, `.` or `..`, no backslash. The
/// empty path is the app itself.
fn relative_path(raw: &str) -> Option<String> {
    let decoded = String::from_utf8(percent_decode(raw)?).ok()?;
    if decoded.is_empty() {
        return Some(decoded);
    }
    let plain = decoded.split('/').all(|segment| {
        !matches!(segment, "" | "." | "..")
            && !segment
                .chars()
                .any(|c| c.is_control() || c == '\\' || c == ':')
    });
    plain.then_some(decoded)
}

fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The bytes of a regular file at `relative` inside `dir`, if there is one
/// and it really is inside (a link out of the build is not followed).
async fn read_inside(dir: &Path, relative: &str) -> Option<Vec<u8>> {
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let path: PathBuf = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
    if !path.starts_with(&root) || !tokio::fs::metadata(&path).await.ok()?.is_file() {
        return None;
    }
    tokio::fs::read(&path).await.ok()
}

fn extension(relative: &str) -> Option<&str> {
    let name = relative.rsplit('/').next()?;
    name.rsplit_once('.')
        .map(|(_, ext)| ext)
        .filter(|ext| !ext.is_empty())
}

fn content_type(relative: &str) -> &'static str {
    match extension(relative).map(str::to_ascii_lowercase).as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json") | Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(relative_path("").as_deref(), Some(""));
        assert_eq!(
            relative_path("assets/app.js").as_deref(),
            Some("assets/app.js")
        );
        assert_eq!(relative_path("tenants/abc").as_deref(), Some("tenants/abc"));
        assert_eq!(relative_path("a%20b.png").as_deref(), Some("a b.png"));
        for bad in [
            "../Cargo.toml",
            "%2e%2e/Cargo.toml",
            "%2E%2E%2FCargo.toml",
            "assets/..%2f..%2fsecret",
            "assets/%2e%2e/%2e%2e/secret",
            "/etc/passwd",
            "%2fetc/passwd",
            "assets//app.js",
            "./index.html",
            "assets/..",
            "..%5c..%5csecret",
            "C:%5cwindows",
            "a%00b",
            "%zz",
            "%2",
            "%ff%fe",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_first_title_gets_the_escaped_name() {
        let html = "<html><head><TITLE>Caliop admin</TITLE><title>second</title></head></html>";
        assert_eq!(
            with_title(html, "Acme <Mail> & \"Co\""),
            "<html><head><TITLE>Acme &lt;Mail&gt; &amp; &quot;Co&quot;</TITLE><title>second</title></head></html>"
        );
        assert_eq!(with_title("<p>no title</p>", "Acme"), "<p>no title</p>");
        assert_eq!(with_title("<title>unclosed", "Acme"), "<title>unclosed");
    }

    #[test]
    fn types_follow_the_extension() {
        assert_eq!(
            content_type("assets/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/app.js.map"), "application/json");
        assert_eq!(content_type("favicon.ico"), "image/x-icon");
        assert_eq!(content_type("fonts/inter.WOFF2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(extension("assets.d/file"), None);
        assert_eq!(extension("trailing."), None);
    }
}
