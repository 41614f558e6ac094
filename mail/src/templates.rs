//! The mail the system writes to people, from templates in
//! `mail/templates/` (`{name}.{lang}.txt`: a `Subject:` line, a blank line,
//! the plain text; `{name}.{lang}.html`: the HTML body, set in
//! `layout.{lang}.html`), in French and English, rendered with the brand of
//! the recipient's tenant.
//!
//! `{{variable}}` is replaced by its value, HTML-escaped in the HTML part.
//! Each template accepts a fixed set of variables (the brand's and its
//! own); a tenant's override of a template is checked against that set
//! before it is saved, so an unknown variable is refused, not left blank.

use std::collections::BTreeMap;

use tenants::store::BrandFields;

/// Every template, and the variables of its own (beside the brand's).
pub const TEMPLATES: &[(&str, &[&str])] = &[
    ("welcome", &["display_name", "address", "signin_url"]),
    (
        "password_reset",
        &["address", "reset_url", "expires_minutes"],
    ),
    (
        "quota_warning",
        &["organisation", "used", "quota", "percent"],
    ),
    (
        "payment_failed",
        &["organisation", "amount", "billing_url", "suspension_date"],
    ),
    (
        "delivery_failure",
        &["original_subject", "recipients", "reason"],
    ),
    ("admission", &["address", "signin_url"]),
];

/// Variables every template may use: the brand.
pub const BRAND_VARIABLES: &[&str] = &[
    "product_name",
    "primary_color",
    "accent_color",
    "support_address",
    "legal_url",
    "privacy_url",
];

pub const LANGUAGES: &[&str] = &["en", "fr"];

macro_rules! builtin {
    ($($name:literal),+) => {
        fn builtin_files(name: &str, language: &str) -> Option<(&'static str, &'static str)> {
            match (name, language) {
                $(
                    ($name, "en") => Some((include_str!(concat!("../templates/", $name, ".en.txt")), include_str!(concat!("../templates/", $name, ".en.html")))),
                    ($name, "fr") => Some((include_str!(concat!("../templates/", $name, ".fr.txt")), include_str!(concat!("../templates/", $name, ".fr.html")))),
                )+
                _ => None,
            }
        }
    };
}

builtin!(
    "welcome",
    "password_reset",
    "quota_warning",
    "payment_failed",
    "delivery_failure",
    "admission"
);

fn layout(language: &str) -> &'static str {
    match language {
        "fr" => include_str!("../templates/layout.fr.html"),
        _ => include_str!("../templates/layout.en.html"),
    }
}

/// A template's three parts, built in or overridden by a tenant.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Template {
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (set inside the branded layout).
    pub html: String,
}

/// What a template renders to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    /// A whole HTML document.
    pub html: String,
}

/// The variables a template accepts, or `None` for an unknown template.
pub fn variables(name: &str) -> Option<Vec<&'static str>> {
    let (_, own) = TEMPLATES.iter().find(|(n, _)| *n == name)?;
    Some(BRAND_VARIABLES.iter().chain(own.iter()).copied().collect())
}

/// The built-in template.
pub fn builtin(name: &str, language: &str) -> Option<Template> {
    let (txt, html) = builtin_files(name, language)?;
    let (first, text) = txt.split_once("\n\n")?;
    Some(Template {
        subject: first.strip_prefix("Subject: ")?.trim().to_owned(),
        text: text.to_owned(),
        html: html.to_owned(),
    })
}

/// The `{{names}}` in `text`, or what is malformed about them.
fn placeholders(text: &str) -> Result<Vec<&str>, String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a `{{` is never closed by `}}`".to_owned())?;
        let name = after[..end].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!(
                "`{{{{{}}}}}` is not a variable name",
                &after[..end]
            ));
        }
        found.push(name);
        rest = &after[end + 2..];
    }
    Ok(found)
}

/// Checks a template (an override) against what `name` accepts.
pub fn check(name: &str, template: &Template) -> Result<(), String> {
    let allowed = variables(name).ok_or_else(|| format!("there is no template `{name}`"))?;
    for (part, text, limit) in [
        ("subject", &template.subject, 200),
        ("text", &template.text, 20_000),
        ("html", &template.html, 50_000),
    ] {
        if text.trim().is_empty() {
            return Err(format!("`{part}` is empty"));
        }
        if text.len() > limit {
            return Err(format!("`{part}` is longer than {limit} bytes"));
        }
        for variable in placeholders(text).map_err(|why| format!("`{part}`: {why}"))? {
            if !allowed.contains(&variable) {
                return Err(format!(
                    "`{part}` uses the unknown variable `{{{{{variable}}}}}`; `{name}` knows: {}",
                    allowed.join(", ")
                ));
            }
        }
    }
    if template.subject.contains(['\r', '\n']) {
        return Err("`subject` must be one line".into());
    }
    let lower = template.html.to_ascii_lowercase();
    for banned in [
        "<script",
        "javascript:",
        "<iframe",
        "<object",
        "<embed",
        "<form",
    ] {
        if lower.contains(banned) {
            return Err(format!("`html` may not contain `{banned}`"));
        }
    }
    Ok(())
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces every `{{name}}`; `raw` values go in as they are, others through `encode`.
fn fill(
    text: &str,
    values: &BTreeMap<String, String>,
    raw: &BTreeMap<&str, String>,
    encode: fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        if let Some(value) = raw.get(name) {
            out.push_str(value);
        } else {
            out.push_str(&encode(
                values.get(name).map(String::as_str).unwrap_or_default(),
            ));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The brand's values, with sensible stand-ins for what is unset.
fn brand_values(brand: &BrandFields, fallback_support: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    values.insert(
        "product_name".into(),
        brand.product_name.clone().unwrap_or_else(|| "Mail".into()),
    );
    values.insert(
        "primary_color".into(),
        brand
            .primary_color
            .clone()
            .unwrap_or_else(|| "#1d4ed8".into()),
    );
    values.insert(
        "accent_color".into(),
        brand
            .accent_color
            .clone()
            .unwrap_or_else(|| "#0f766e".into()),
    );
    values.insert(
        "support_address".into(),
        brand
            .support_address
            .clone()
            .unwrap_or_else(|| fallback_support.to_owned()),
    );
    values.insert(
        "legal_url".into(),
        brand.legal_url.clone().unwrap_or_default(),
    );
    values.insert(
        "privacy_url".into(),
        brand.privacy_url.clone().unwrap_or_default(),
    );
    values
}

/// Renders `template` in `language` with `brand` and the template's own `values`.
/// `fallback_support` is the address shown when the brand names none.
pub fn render(
    template: &Template,
    language: &str,
    brand: &BrandFields,
    fallback_support: &str,
    values: &BTreeMap<String, String>,
) -> Rendered {
    let mut all = brand_values(brand, fallback_support);
    all.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    let none = BTreeMap::new();
    let subject = fill(&template.subject, &all, &none, |s| {
        s.replace(['\r', '\n'], " ")
    });
    let text = fill(&template.text, &all, &none, str::to_owned);
    let content = fill(&template.html, &all, &none, escape);
    let (legal, privacy) = if language == "fr" {
        ("Mentions légales", "Confidentialité")
    } else {
        ("Legal notice", "Privacy")
    };
    let link = |key: &str, label: &str| match all.get(key).filter(|u| !u.is_empty()) {
        Some(url) => format!(" · <a href=\"{}\">{label}</a>", escape(url)),
        None => String::new(),
    };
    let mut raw = BTreeMap::new();
    raw.insert("content", content);
    raw.insert("legal_link", link("legal_url", legal));
    raw.insert("privacy_link", link("privacy_url", privacy));
    all.insert("subject".into(), subject.clone());
    let html = fill(layout(language), &all, &raw, escape);
    Rendered {
        subject,
        text,
        html,
    }
}

/// A system mail rendered for a tenant, and who it comes from.
pub struct Prepared {
    pub rendered: Rendered,
    pub language: String,
    /// `no-reply@` the tenant's (or its nearest ancestor's) verified domain, else this host.
    pub from: String,
    /// The tenant's product name.
    pub from_name: String,
}

/// Renders template `name` for `tenant`: its brand and wording (or its
/// ancestors', or the built-in ones), in `language` or the tenant's own.
pub async fn prepare(
    store: &tenants::Store,
    hostname: &str,
    tenant: tenants::TenantId,
    name: &str,
    language: Option<&str>,
    values: &BTreeMap<String, String>,
) -> Result<Prepared, String> {
    let brand = store
        .brand(tenant, &BrandFields::caliop())
        .await
        .map_err(|e| e.to_string())?;
    let language = language
        .map(str::to_owned)
        .or_else(|| brand.default_language.clone())
        .filter(|l| LANGUAGES.contains(&l.as_str()))
        .unwrap_or_else(|| "en".into());
    let template = match store
        .template_override(tenant, name, &language)
        .await
        .map_err(|e| e.to_string())?
    {
        Some((_, w)) => Template {
            subject: w.subject,
            text: w.text,
            html: w.html,
        },
        None => builtin(name, &language).ok_or_else(|| format!("no template `{name}`"))?,
    };
    let mut domain = None;
    for id in store.ancestry(tenant).await.map_err(|e| e.to_string())? {
        if let Some(d) = store.sending_domain(id).await.map_err(|e| e.to_string())? {
            domain = Some(d);
            break;
        }
    }
    let domain = domain.unwrap_or_else(|| hostname.to_owned());
    let rendered = render(
        &template,
        &language,
        &brand,
        &format!("postmaster@{domain}"),
        values,
    );
    Ok(Prepared {
        rendered,
        language,
        from: format!("no-reply@{domain}"),
        from_name: brand.product_name.unwrap_or_default(),
    })
}

/// Sample values for previews.
pub fn sample_values(name: &str) -> BTreeMap<String, String> {
    let sample: &[(&str, &str)] = &[
        ("display_name", "Camille Martin"),
        ("address", "camille@example.org"),
        ("signin_url", "https://mail.example.org/"),
        ("reset_url", "https://mail.example.org/reset#token"),
        ("expires_minutes", "30"),
        ("organisation", "Example Organisation"),
        ("used", "8.0 GiB"),
        ("quota", "10.0 GiB"),
        ("percent", "80"),
        ("amount", "120.00 EUR"),
        ("billing_url", "https://mail.example.org/admin/billing"),
        ("suspension_date", "2026-12-15"),
        ("original_subject", "Quarterly figures"),
        ("recipients", "someone@example.net"),
        ("reason", "550 5.1.1 no such user"),
    ];
    let own = TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .unwrap_or_default();
    sample
        .iter()
        .filter(|(k, _)| own.contains(k))
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A multipart/alternative message (text and HTML) from `from` to `to`.
pub fn message(
    from_name: &str,
    from: &str,
    to: &str,
    rendered: &Rendered,
    language: &str,
    hostname: &str,
) -> Result<Vec<u8>, String> {
    use lettre::message::{Mailbox, MultiPart};
    let from: Mailbox = format!(
        "{} <{from}>",
        from_name.replace(['"', '<', '>', '\r', '\n'], "")
    )
    .parse()
    .map_err(|e| format!("the sender {from}: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("the recipient {to}: {e}"))?;
    let message = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(format!("<{}@{hostname}>", uuid::Uuid::now_v7())))
        .header(ContentLanguage(language.to_owned()))
        .header(AutoSubmitted)
        .multipart(MultiPart::alternative_plain_html(
            rendered.text.clone(),
            rendered.html.clone(),
        ))
        .map_err(|e| format!("building the message: {e}"))?;
    Ok(message.formatted())
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no auto-replies to system mail.
#[derive(Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// `Content-Language` (RFC 3282).
#[derive(Clone)]
struct ContentLanguage(String);

impl lettre::message::header::Header for ContentLanguage {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Content-Language")
    }

    fn parse(value: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ContentLanguage(value.to_owned()))
    }

    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_template_exists_in_both_languages_and_uses_only_its_variables() {
        for (name, _) in TEMPLATES {
            for language in LANGUAGES {
                let template =
                    builtin(name, language).unwrap_or_else(|| panic!("{name}.{language}"));
                check(name, &template).unwrap_or_else(|e| panic!("{name}.{language}: {e}"));
            }
        }
    }

    #[test]
    fn overrides_with_unknown_variables_or_scripts_are_refused() {
        let mut t = builtin("welcome", "en").unwrap();
        t.text.push_str("{{password}}");
        assert!(
            check("welcome", &t)
                .unwrap_err()
                .contains("unknown variable `{{password}}`")
        );
        let mut t = builtin("welcome", "en").unwrap();
        t.html.push_str("<script>x</script>");
        assert!(check("welcome", &t).unwrap_err().contains("<script"));
        let mut t = builtin("welcome", "en").unwrap();
        t.subject.push_str(" {{unclosed");
        assert!(check("welcome", &t).unwrap_err().contains("never closed"));
        assert!(check("nonsense", &t).unwrap_err().contains("no template"));
    }

    #[test]
    fn values_are_escaped_in_html_and_the_brand_is_applied() {
        let brand = BrandFields {
            product_name: Some("Acme <Mail>".into()),
            primary_color: Some("#9d174d".into()),
            ..BrandFields::default()
        };
        let mut values = sample_values("welcome");
        values.insert("display_name".into(), "<b>Eve</b> & co".into());
        let r = render(
            &builtin("welcome", "en").unwrap(),
            "en",
            &brand,
            "postmaster@acme.test",
            &values,
        );
        assert!(
            r.html.contains("&lt;b&gt;Eve&lt;/b&gt; &amp; co"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<b>Eve</b>"));
        assert!(r.html.contains("Acme &lt;Mail&gt;") && r.html.contains("#9d174d"));
        assert!(
            r.text.contains("<b>Eve</b> & co"),
            "plain text is not escaped"
        );
        assert_eq!(r.subject, "Welcome to Acme <Mail>, <b>Eve</b> & co");
        assert!(r.html.contains("mailto:postmaster@acme.test"));
        assert!(!r.html.contains("{{"), "every placeholder is filled");
    }
}
