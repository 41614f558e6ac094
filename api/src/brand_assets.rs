//! Checks on what tenants upload for their brand, and on their colours.
//!
//! An image is taken only if its bytes are what its type says (PNG, WebP or
//! SVG, by signature, not by name) and within the size limit. An SVG is
//! parsed as XML and refused (with what was found and where) if anything
//! in it could run or fetch: scripts, event handlers, `foreignObject`,
//! references outside the document (`href`, `xlink:href`, `url(…)`, `@import`),
//! entity declarations. Refusing is safer than rewriting: what is stored is
//! exactly what was checked. SVGs are also served with a CSP that forbids
//! scripts, should a browser be shown one directly.

use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// The image types a brand may use.
pub const TYPES: &[&str] = &["image/png", "image/webp", "image/svg+xml"];

fn human(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Refuses a declared size over `limit` before reading the body.
pub fn check_size(what: &str, size: usize, limit: usize) -> Result<(), String> {
    if size > limit {
        return Err(format!(
            "the {what} is {}; the limit is {}",
            human(size),
            human(limit)
        ));
    }
    Ok(())
}

/// What the bytes are, by their signature.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some("image/png");
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if bytes.starts_with(b"\xff\xd8\xff") {
        return Some("image/jpeg");
    }
    if bytes.starts_with(b"GIF8") {
        return Some("image/gif");
    }
    let text = std::str::from_utf8(&bytes[..bytes.len().min(1024)]).ok()?;
    let start = text.trim_start_matches('\u{feff}').trim_start();
    if start.starts_with("<?xml") || start.starts_with("<svg") || start.starts_with("<!--") {
        return Some("image/svg+xml");
    }
    None
}

/// Checks an upload declared as `declared`; returns the content type to store.
pub fn check_image(
    what: &str,
    declared: &str,
    bytes: &[u8],
    limit: usize,
) -> Result<&'static str, String> {
    check_size(what, bytes.len(), limit)?;
    let declared = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(&kind) = TYPES.iter().find(|t| **t == declared) else {
        return Err(format!(
            "the {what} must be sent as {} (Content-Type), not `{declared}`",
            TYPES.join(", ")
        ));
    };
    match sniff(bytes) {
        Some(found) if found == kind => {}
        Some(found) => {
            return Err(format!(
                "the {what} is declared as {kind} but its bytes are {found}"
            ));
        }
        None => {
            return Err(format!(
                "the {what} is declared as {kind} but its bytes are not an image of that type"
            ));
        }
    }
    if kind == "image/svg+xml" {
        check_svg(bytes).map_err(|why| format!("the {what} SVG is refused: {why}"))?;
    }
    Ok(kind)
}

fn external(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty() || v.starts_with('#'))
}

fn css_is_external(css: &str) -> Option<String> {
    let lower = css.to_ascii_lowercase();
    if lower.contains("@import") {
        return Some("an @import".into());
    }
    if lower.contains("expression(") || lower.contains("javascript:") {
        return Some("script in a style".into());
    }
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("url(") {
        let inside = rest[i + 4..].trim_start().trim_start_matches(['"', '\'']);
        if !inside.starts_with('#') {
            return Some(format!(
                "an external reference url({})",
                inside.split(')').next().unwrap_or_default()
            ));
        }
        rest = &rest[i + 4..];
    }
    None
}

/// Refuses an SVG with anything that could run or fetch.
pub fn check_svg(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let mut reader = Reader::from_str(text);
    let mut root_seen = false;
    let mut in_style = false;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("it is not well-formed XML ({e}) near byte {position}"))?;
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => Some(e.clone()),
            Event::DocType(_) => {
                return Err("a DOCTYPE (entities could expand or fetch) is not allowed".into());
            }
            Event::PI(_) => return Err("processing instructions are not allowed".into()),
            Event::Text(t) if in_style => {
                let css = String::from_utf8_lossy(t.as_ref()).into_owned();
                if let Some(why) = css_is_external(&css) {
                    return Err(format!("{why} in a <style> near byte {position}"));
                }
                None
            }
            Event::CData(t) if in_style => {
                let css = String::from_utf8_lossy(t.as_ref()).into_owned();
                if let Some(why) = css_is_external(&css) {
                    return Err(format!("{why} in a <style> near byte {position}"));
                }
                None
            }
            Event::End(e) => {
                if e.local_name().as_ref().eq_ignore_ascii_case(b"style") {
                    in_style = false;
                }
                None
            }
            Event::Eof => break,
            _ => None,
        };
        let Some(element) = element else { continue };
        let name = String::from_utf8_lossy(element.local_name().as_ref()).to_ascii_lowercase();
        if !root_seen {
            if name != "svg" {
                return Err(format!("the root element is <{name}>, not <svg>"));
            }
            root_seen = true;
        }
        match name.as_str() {
            "script" => return Err(format!("a <script> element near byte {position}")),
            "foreignobject" => {
                return Err(format!(
                    "a <foreignObject> (it can embed HTML) near byte {position}"
                ));
            }
            "iframe" | "embed" | "object" | "audio" | "video" => {
                return Err(format!("an <{name}> element near byte {position}"));
            }
            "style" if matches!(event, Event::Start(_)) => in_style = true,
            _ => {}
        }
        for attribute in element.attributes() {
            let attribute = attribute
                .map_err(|e| format!("a malformed attribute near byte {position} ({e})"))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).to_ascii_lowercase();
            let value = String::from_utf8_lossy(&attribute.value).into_owned();
            let local = key.rsplit(':').next().unwrap_or(&key).to_owned();
            if local.starts_with("on") {
                return Err(format!(
                    "an event handler `{key}` on <{name}> near byte {position}"
                ));
            }
            if local == "href" || local == "src" {
                if external(&value) {
                    return Err(format!(
                        "an external reference {key}=\"{value}\" on <{name}> near byte {position}"
                    ));
                }
            } else if let Some(why) = css_is_external(&value) {
                return Err(format!(
                    "{why} in the `{key}` attribute of <{name}> near byte {position}"
                ));
            }
            if value.to_ascii_lowercase().contains("javascript:") {
                return Err(format!(
                    "a javascript: URL in `{key}` on <{name}> near byte {position}"
                ));
            }
        }
    }
    if !root_seen {
        return Err("there is no <svg> element".into());
    }
    Ok(())
}

/// `#rrggbb` → its relative luminance (WCAG 2).
fn luminance(color: &str) -> Option<f64> {
    let hex = color.strip_prefix('#')?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |i: usize| {
        let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).ok()?) / 255.0;
        Some(if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        })
    };
    Some(0.2126 * channel(0)? + 0.7152 * channel(2)? + 0.0722 * channel(4)?)
}

/// The WCAG contrast ratio of two `#rrggbb` colours.
pub fn contrast(a: &str, b: &str) -> Option<f64> {
    let (la, lb) = (luminance(a)?, luminance(b)?);
    let (hi, lo) = if la > lb { (la, lb) } else { (lb, la) };
    Some((hi + 0.05) / (lo + 0.05))
}

/// Checks a brand colour against the white it is used with.
pub fn check_color(field: &str, color: &str) -> Result<(), String> {
    let ratio = contrast(color, "#ffffff")
        .ok_or_else(|| format!("`{field}` {color:?} is not a colour in the form #rrggbb"))?;
    if ratio < 4.5 {
        return Err(format!(
            "`{field}` {color} has a contrast of {ratio:.2}:1 with white; at least 4.5:1 is needed for text to stay readable (WCAG AA)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn images_are_what_they_say_and_small_enough() {
        assert_eq!(check_image("logo", "image/png", PNG, 1000), Ok("image/png"));
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF";
        assert!(
            check_image("logo", "image/png", jpeg, 1000)
                .unwrap_err()
                .contains("its bytes are image/jpeg")
        );
        assert!(
            check_image("logo", "image/jpeg", jpeg, 1000)
                .unwrap_err()
                .contains("must be sent as")
        );
        assert!(
            check_image("logo", "image/png", &vec![0u8; 2048], 1024)
                .unwrap_err()
                .contains("the limit is 1 KiB")
        );
        assert!(
            check_size("logo", 20 * 1024 * 1024, 512 * 1024)
                .unwrap_err()
                .contains("20.0 MiB")
        );
    }

    #[test]
    fn svgs_that_could_run_or_fetch_are_refused() {
        let ok = br##"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><defs><linearGradient id="g"/></defs><rect fill="url(#g)" width="10" height="10"/><use xlink:href="#g"/><style>rect { fill: #123456 }</style></svg>"##;
        assert_eq!(check_svg(ok), Ok(()));
        let refused = [
            (&br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#[..], "<script>"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#, "event handler"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg"><image href="https://tracker.example/p.png"/></svg>"#, "external reference"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="http://evil.example/x.svg#a"/></svg>"#, "external reference"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:url(https://evil.example/f)"/></svg>"#, "external reference"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://x.example/a.css);</style></svg>"#, "@import"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div/></foreignObject></svg>"#, "foreignObject"),
            (br#"<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]><svg>&x;</svg>"#, "DOCTYPE"),
            (br#"<svg xmlns="http://www.w3.org/2000/svg"><a href="javascript:alert(1)"><rect/></a></svg>"#, "external reference"),
            (br#"<html><svg/></html>"#, "root element"),
            (br#"<svg><rect></svg>"#, "well-formed"),
        ];
        for (svg, why) in refused {
            let err = check_svg(svg).unwrap_err();
            assert!(err.contains(why), "{}: {err}", String::from_utf8_lossy(svg));
        }
    }

    #[test]
    fn colours_must_contrast_with_white() {
        assert!((contrast("#000000", "#ffffff").unwrap() - 21.0).abs() < 0.01);
        assert!(check_color("primary_color", "#1d4ed8").is_ok());
        let pale = check_color("primary_color", "#ffff00").unwrap_err();
        assert!(pale.contains("contrast of 1.07:1"), "{pale}");
        assert!(
            check_color("accent_color", "blue")
                .unwrap_err()
                .contains("#rrggbb")
        );
    }

    /// The admin app checks forms before sending them (web-admin/src/validate.ts);
    /// its unit tests and this one run the same vectors, so both sides agree.
    #[test]
    fn the_admin_apps_vectors_are_judged_alike_here() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../web-admin/tests/vectors.json")).unwrap();
        let check = |kind: &str, value: &str| -> bool {
            match kind {
                "domain" => tenants::DomainName::parse(value).is_ok(),
                "email" => tenants::EmailAddress::parse(value).is_ok(),
                "password" => tenants::password::check_strength(value).is_ok(),
                "color" => check_color("primary_color", value).is_ok(),
                other => panic!("no check for {other}"),
            }
        };
        let mut seen = 0;
        for kind in ["domain", "email", "password", "color"] {
            for (list, expected) in [("valid", true), ("invalid", false)] {
                for value in vectors[kind][list].as_array().unwrap() {
                    let value = value.as_str().unwrap();
                    assert_eq!(
                        check(kind, value),
                        expected,
                        "{kind} {value:?} should be {list}"
                    );
                    seen += 1;
                }
            }
        }
        assert!(seen > 40, "only {seen} vectors");
    }
}
