//! Checks on what tenants upload for their brand, and on their colours.
//!
//! An image is taken only if its bytes are what its type says (PNG, WebP or
//! SVG, by signature, not by name) and within the size limit. An SVG is
//! parsed as XML (namespaces resolved) and judged on what a browser would
//! read: values after XML entity decoding, CSS after escape decoding. Only
//! allow-listed SVG elements and attributes pass; it is refused (with what
//! was found and where) if anything in it could run or fetch: scripts,
//! event handlers, `foreignObject`, references outside the document
//! (`href`, `xlink:href`, `url(…)`, `@import`), entity declarations.
//! Refusing is safer than rewriting: what is stored is exactly what was checked. SVGs are also served with a CSP that forbids
//! scripts, should a browser be shown one directly.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

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

const SVG_NS: &[u8] = b"http://www.w3.org/2000/svg";
const XLINK_NS: &[u8] = b"http://www.w3.org/1999/xlink";
const XML_NS: &[u8] = b"http://www.w3.org/XML/1998/namespace";
/// What drawing programs leave in their files (Inkscape, Sodipodi, the RDF
/// licence block): never rendered, so taken as they are, attributes checked.
const EDITOR_NS: &[&[u8]] = &[
    b"http://www.inkscape.org/namespaces/inkscape",
    b"http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    b"http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    b"http://creativecommons.org/ns#",
    b"http://purl.org/dc/elements/1.1/",
];

/// SVG elements that draw, group or describe, and nothing that can run,
/// embed a document or animate an attribute into a link.
#[rustfmt::skip]
const SVG_ELEMENTS: &[&str] = &[
    "svg", "g", "defs", "title", "desc", "metadata", "symbol", "use", "a", "switch",
    "path", "rect", "circle", "ellipse", "line", "polyline", "polygon", "image",
    "text", "tspan", "textPath", "linearGradient", "radialGradient", "stop", "pattern",
    "clipPath", "mask", "marker", "style", "filter", "feBlend", "feColorMatrix",
    "feComponentTransfer", "feComposite", "feDropShadow", "feFlood", "feFuncA", "feFuncB",
    "feFuncG", "feFuncR", "feGaussianBlur", "feMerge", "feMergeNode", "feMorphology",
    "feOffset",
];

/// Presentation and geometry attributes. Event handlers (`on…`), `href`
/// to anything but a fragment, and animation targets are not among them.
#[rustfmt::skip]
const SVG_ATTRIBUTES: &[&str] = &[
    "id", "class", "style", "version", "baseProfile", "viewBox", "preserveAspectRatio",
    "width", "height", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx",
    "fy", "fr", "d", "points", "pathLength", "transform", "href", "fill", "fill-opacity",
    "fill-rule", "stroke", "stroke-width", "stroke-opacity", "stroke-linecap",
    "stroke-linejoin", "stroke-miterlimit", "stroke-dasharray", "stroke-dashoffset",
    "opacity", "color", "display", "visibility", "overflow", "clip", "clip-path",
    "clip-rule", "clipPathUnits", "mask", "maskUnits", "maskContentUnits", "filter",
    "filterUnits", "primitiveUnits", "gradientUnits", "gradientTransform", "spreadMethod",
    "offset", "stop-color", "stop-opacity", "patternUnits", "patternContentUnits",
    "patternTransform", "font", "font-family", "font-size", "font-weight", "font-style",
    "font-variant", "font-stretch", "text-anchor", "dominant-baseline",
    "alignment-baseline", "baseline-shift", "letter-spacing", "word-spacing",
    "text-decoration", "writing-mode", "direction", "dx", "dy", "rotate", "textLength",
    "lengthAdjust", "startOffset", "enable-background", "isolation", "mix-blend-mode",
    "paint-order", "vector-effect", "shape-rendering", "text-rendering", "image-rendering",
    "color-interpolation", "color-interpolation-filters", "flood-color", "flood-opacity",
    "lighting-color", "in", "in2", "result", "stdDeviation", "mode", "operator", "k1", "k2",
    "k3", "k4", "type", "values", "tableValues", "slope", "intercept", "amplitude",
    "exponent", "radius", "marker-start", "marker-mid", "marker-end", "markerWidth",
    "markerHeight", "markerUnits", "refX", "refY", "orient", "role", "aria-label",
    "aria-hidden", "focusable", "data-name", "media", "systemLanguage",
];

/// Raster images a logo may embed in an `<image>`: inert, whatever a viewer does.
const EMBEDDED_IMAGES: &[&str] = &[
    "data:image/png;base64,",
    "data:image/jpeg;base64,",
    "data:image/webp;base64,",
    "data:image/gif;base64,",
];

/// CSS as a browser reads it: escapes decoded (`\75 rl(` is `url(`,
/// `\:` is `:`, an escaped newline vanishes) and comments dropped.
fn css_decoded(css: &str) -> String {
    let mut out = String::with_capacity(css.len());
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let mut hex = String::new();
                while hex.len() < 6 {
                    match chars.peek() {
                        Some(h) if h.is_ascii_hexdigit() => {
                            hex.push(*h);
                            chars.next();
                        }
                        _ => break,
                    }
                }
                if hex.is_empty() {
                    match chars.next() {
                        Some('\n' | '\r' | '\u{c}') | None => {}
                        Some(other) => out.push(other),
                    }
                } else {
                    if chars.peek().is_some_and(|w| w.is_whitespace()) {
                        chars.next();
                    }
                    let code = u32::from_str_radix(&hex, 16).unwrap_or(0xFFFD);
                    out.push(
                        char::from_u32(code)
                            .filter(|c| *c != '\0')
                            .unwrap_or('\u{FFFD}'),
                    );
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = '\0';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// What in a CSS text (a `<style>`, a `style` attribute or a presentation
/// attribute, all parsed as CSS) could fetch or run, read after decoding.
fn css_danger(css: &str) -> Option<String> {
    // Whitespace and controls go too: `java script:` and `url (` are caught
    // alike, and a false alarm on a logo costs less than a miss.
    let plain: String = css_decoded(css)
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .flat_map(char::to_lowercase)
        .collect();
    for (needle, why) in [
        ("@import", "an @import"),
        ("@font-face", "an @font-face"),
        ("@namespace", "an @namespace"),
        ("expression(", "script in a style (expression)"),
        ("javascript:", "a javascript: URL"),
        ("vbscript:", "a vbscript: URL"),
        ("behavior:", "script in a style (behavior)"),
        ("-moz-binding", "script in a style (-moz-binding)"),
        ("image-set(", "an external reference image-set(…)"),
        ("image(", "an external reference image(…)"),
        ("cross-fade(", "an external reference cross-fade(…)"),
        ("element(", "an external reference element(…)"),
        ("src(", "an external reference src(…)"),
    ] {
        if plain.contains(needle) {
            return Some(why.to_owned());
        }
    }
    let mut rest = plain.as_str();
    while let Some(i) = rest.find("url(") {
        let inside = rest[i + 4..].trim_start_matches(['"', '\'']);
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

/// A name's namespace, owned, so the reader can be asked again.
#[derive(PartialEq)]
enum Space {
    Svg,
    XLink,
    Xml,
    Editor,
    Other(String),
}

/// Names in no namespace are judged as SVG's: an attribute without a
/// prefix belongs to its element, and an element without one is held to
/// the SVG allow-list all the same.
fn space_of(resolved: &ResolveResult<'_>) -> Space {
    match resolved {
        ResolveResult::Unbound => Space::Svg,
        ResolveResult::Bound(ns) if ns.as_ref() == SVG_NS => Space::Svg,
        ResolveResult::Bound(ns) if ns.as_ref() == XLINK_NS => Space::XLink,
        ResolveResult::Bound(ns) if ns.as_ref() == XML_NS => Space::Xml,
        ResolveResult::Bound(ns) if EDITOR_NS.contains(&ns.as_ref()) => Space::Editor,
        ResolveResult::Bound(ns) => Space::Other(String::from_utf8_lossy(ns.as_ref()).into()),
        ResolveResult::Unknown(prefix) => Space::Other(format!(
            "the undeclared prefix `{}`",
            String::from_utf8_lossy(prefix)
        )),
    }
}

/// The text of a `<style>` as the XML parser hands it over: text, CDATA
/// and character or entity references, decoded.
fn style_text(event: &Event<'_>, position: u64) -> Result<Option<String>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("unreadable text near byte {position} ({e})");
    Ok(Some(match event {
        Event::Text(t) => t.decode().map_err(|e| bad(&e))?.into_owned(),
        Event::CData(t) => t.decode().map_err(|e| bad(&e))?.into_owned(),
        Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| bad(&e))? {
            Some(c) => c.to_string(),
            None => {
                let name = r.decode().map_err(|e| bad(&e))?;
                quick_xml::escape::resolve_predefined_entity(&name)
                    .ok_or_else(|| format!("an unknown entity &{name}; near byte {position}"))?
                    .to_owned()
            }
        },
        _ => return Ok(None),
    }))
}

/// Refuses an SVG unless every element and attribute is on the allow-list
/// and no value, once its XML entities and CSS escapes are decoded, could
/// run or fetch anything.
pub fn check_svg(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let mut reader = NsReader::from_str(text);
    let mut root_seen = false;
    let mut style: Option<String> = None;
    loop {
        let position = reader.buffer_position();
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("it is not well-formed XML ({e}) near byte {position}"))?;
        let element_space = space_of(&resolved);
        if let Some(css) = style.as_mut()
            && let Some(more) = style_text(&event, position)?
        {
            css.push_str(&more);
            continue;
        }
        let element = match &event {
            Event::Start(e) | Event::Empty(e) => e.clone(),
            Event::DocType(_) => {
                return Err("a DOCTYPE (entities could expand or fetch) is not allowed".into());
            }
            Event::PI(_) => return Err("processing instructions are not allowed".into()),
            Event::End(_) => {
                if let Some(css) = style.take()
                    && let Some(why) = css_danger(&css)
                {
                    return Err(format!("{why} in a <style> before byte {position}"));
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8_lossy(element.local_name().as_ref()).into_owned();
        if !root_seen {
            if name != "svg" {
                return Err(format!("the root element is <{name}>, not <svg>"));
            }
            root_seen = true;
        }
        match element_space {
            Space::Svg | Space::Editor => {}
            Space::XLink | Space::Xml | Space::Other(_) => {
                return Err(format!(
                    "an element <{name}> outside SVG near byte {position}"
                ));
            }
        }
        if element_space != Space::Editor {
            match name.as_str() {
                "script" => return Err(format!("a <script> element near byte {position}")),
                "foreignObject" => {
                    return Err(format!(
                        "a <foreignObject> (it can embed HTML) near byte {position}"
                    ));
                }
                known if SVG_ELEMENTS.contains(&known) => {}
                other => {
                    return Err(format!(
                        "an <{other}> element (not among the SVG elements a logo may use) near byte {position}"
                    ));
                }
            }
            if name == "style" && matches!(event, Event::Start(_)) {
                style = Some(String::new());
            }
        }
        for attribute in element.attributes() {
            let attribute = attribute
                .map_err(|e| format!("a malformed attribute near byte {position} ({e})"))?;
            let key = String::from_utf8_lossy(attribute.key.as_ref()).into_owned();
            if attribute.key.as_namespace_binding().is_some() {
                continue;
            }
            let (resolved, local) = reader.resolve_attribute(attribute.key);
            let space = space_of(&resolved);
            let local = String::from_utf8_lossy(local.as_ref()).into_owned();
            let value = attribute.unescape_value().map_err(|e| {
                format!(
                    "the `{key}` attribute of <{name}> near byte {position} does not decode ({e})"
                )
            })?;
            if local.to_ascii_lowercase().starts_with("on") {
                return Err(format!(
                    "an event handler `{key}` on <{name}> near byte {position}"
                ));
            }
            let is_href = local == "href" && matches!(space, Space::Svg | Space::XLink);
            // A drawing program's own elements are not rendered: any attribute goes.
            let allowed = element_space == Space::Editor
                || match space {
                    Space::Svg => SVG_ATTRIBUTES.contains(&local.as_str()),
                    Space::XLink => matches!(local.as_str(), "href" | "title"),
                    Space::Xml => matches!(local.as_str(), "space" | "lang" | "id"),
                    Space::Editor => true,
                    Space::Other(_) => false,
                };
            if !allowed {
                return Err(format!(
                    "the attribute `{key}` on <{name}> (not among those a logo may use) near byte {position}"
                ));
            }
            if is_href {
                let target = value.trim();
                let fragment = target.starts_with('#');
                let embedded = name == "image"
                    && EMBEDDED_IMAGES.iter().any(|p| {
                        target
                            .get(..p.len())
                            .is_some_and(|t| t.eq_ignore_ascii_case(p))
                    });
                if !(fragment || embedded) {
                    return Err(format!(
                        "an external reference {key}=\"{target}\" on <{name}> near byte {position}"
                    ));
                }
                continue;
            }
            if let Some(why) = css_danger(&value) {
                return Err(format!(
                    "{why} in the `{key}` attribute of <{name}> near byte {position}"
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

    /// Logos as drawing programs write them: Illustrator, Inkscape (with its
    /// metadata), a gradient by fragment, an embedded PNG, a style sheet.
    const REAL_LOGOS: &[&str] = &[
        r##"<?xml version="1.0" encoding="utf-8"?>
<!-- Generator: Adobe Illustrator 24.0.0, SVG Export Plug-In . SVG Version: 6.00 Build 0)  -->
<svg version="1.1" id="Layer_1" xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" x="0px" y="0px"
	 viewBox="0 0 200 60" style="enable-background:new 0 0 200 60;" xml:space="preserve">
<style type="text/css">
	.st0{fill:#1D4ED8;}
	.st1{font-family:'Helvetica Neue', Arial, sans-serif; font-size:24px;}
</style>
<g id="mark" data-name="mark">
	<path class="st0" d="M10,10h40v40H10V10z"/>
	<text transform="matrix(1 0 0 1 60 40)" class="st0 st1">Acme &amp; Co</text>
</g>
</svg>"##,
        r##"<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg width="64mm" height="16mm" viewBox="0 0 64 16" version="1.1" id="svg5"
   inkscape:version="1.2 (dc2aedaf03, 2022-05-15)" sodipodi:docname="logo.svg"
   xmlns:inkscape="http://www.inkscape.org/namespaces/inkscape"
   xmlns:sodipodi="http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd"
   xmlns="http://www.w3.org/2000/svg" xmlns:svg="http://www.w3.org/2000/svg"
   xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:cc="http://creativecommons.org/ns#"
   xmlns:dc="http://purl.org/dc/elements/1.1/">
  <sodipodi:namedview id="namedview7" pagecolor="#ffffff" bordercolor="#666666" inkscape:zoom="2.5" />
  <metadata><rdf:RDF><cc:Work rdf:about=""><dc:format>image/svg+xml</dc:format>
    <dc:type rdf:resource="http://purl.org/dc/dcmitype/StillImage" /></cc:Work></rdf:RDF></metadata>
  <defs id="defs2"><linearGradient id="g1"><stop style="stop-color:#0b3d91;stop-opacity:1" offset="0" /></linearGradient></defs>
  <g inkscape:label="Layer 1" inkscape:groupmode="layer" id="layer1">
    <rect style="fill:url(#g1);stroke:none" width="16" height="16" x="0" y="0" id="rect1" />
    <circle fill="URL( '#g1' )" cx="40" cy="8" r="6" />
  </g>
</svg>"##,
        r##"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10"><title>Acme</title><defs><clipPath id="c"><circle cx="5" cy="5" r="5"/></clipPath><symbol id="s"><rect width="4" height="4"/></symbol></defs><image clip-path="url(#c)" width="10" height="10" xlink:href="data:image/png;base64,iVBORw0KGgo="/><use xlink:href="#s" x="3" y="3"/><use href="#s"/></svg>"##,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><style><![CDATA[ path { fill: #123456 } /* brand blue */ ]]></style><filter id="f"><feGaussianBlur stdDeviation="1"/></filter><path filter="url(#f)" d="M0 0L10 10"/></svg>"##,
    ];

    #[test]
    fn real_logos_are_accepted() {
        for logo in REAL_LOGOS {
            assert_eq!(check_svg(logo.as_bytes()), Ok(()), "{logo}");
        }
    }

    /// Finding 11: escaped forms of `javascript:` and `url(` passed a check
    /// on the raw text. Each is now judged after decoding.
    #[test]
    fn escaped_vectors_known_to_pass_before_are_refused() {
        let refused = [
            r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="&#106;avascript:alert(1)"><rect/></a></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:u\72 l(https://evil.example/p)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:\75 rl(https://evil.example/p)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect fill="&#x75;rl(https://evil.example/p)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>rect { fill: u&#x72;l(https://evil.example/p) }</style></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><style>@\69mport "https://evil.example/a.css";</style></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:h="http://www.w3.org/1999/xhtml"><h:script>alert(1)</h:script></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><set attributeName="href" to="javascript:alert(1)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><animate attributeName="href" values="javascript:alert(1)"/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml;base64,PHN2Zz4="/></svg>"#,
            r#"<svg xmlns="http://www.w3.org/2000/svg"><rect xml:base="https://evil.example/"/></svg>"#,
        ];
        for svg in refused {
            assert!(check_svg(svg.as_bytes()).is_err(), "accepted: {svg}");
        }
    }

    /// One character as an XML text or attribute may spell it.
    fn xml_spelling(c: char, how: u8) -> String {
        match how % 4 {
            0 => c.to_string(),
            1 => format!("&#{};", c as u32),
            2 => format!("&#x{:x};", c as u32),
            _ => format!("&#x{:06X};", c as u32),
        }
    }

    /// One character as CSS may spell it (letters in either case, escapes
    /// with and without a closing space; `\c` only where `c` is no hex digit).
    fn css_spelling(c: char, how: u8) -> String {
        match how % 6 {
            0 => c.to_string(),
            1 => c.to_ascii_uppercase().to_string(),
            2 => format!("\\{:x} ", c as u32),
            3 => format!("\\{:06x}", c as u32),
            4 if !c.is_ascii_hexdigit() && c.is_ascii_graphic() => format!("\\{c}"),
            _ => format!("\\{:X}\t", c as u32),
        }
    }

    fn spelled(text: &str, ways: &[u8], spell: fn(char, u8) -> String) -> String {
        text.chars()
            .enumerate()
            .map(|(i, c)| spell(c, ways[i % ways.len()]))
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Known XSS and fetch vectors, each in many encodings (XML
        /// entities, CSS escapes, case, both layers at once), in every
        /// place a browser would read them: all refused.
        #[test]
        fn encoded_xss_vectors_are_refused(
            css_ways in proptest::collection::vec(0u8..6, 1..40),
            xml_ways in proptest::collection::vec(0u8..4, 1..40),
            js in "(javascript|JavaScript|JAVASCRIPT|vbscript):alert\\(1\\)",
            target in "(https://evil\\.example/p|//evil\\.example/p|http://127\\.0\\.0\\.1/x|data:text/html,x)",
        ) {
            let url = format!("url({target})");
            let in_css = |payload: &str| spelled(&spelled(payload, &css_ways, css_spelling), &xml_ways, xml_spelling);
            let in_xml = |payload: &str| spelled(payload, &xml_ways, xml_spelling);
            let vectors = [
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><a href="{}"><rect/></a></svg>"#, in_xml(&js)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"><use xlink:href="{}"/></svg>"#, in_xml(&target)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="{}"/></svg>"#, in_xml(&target)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:{}"/></svg>"#, in_css(&url)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect fill="{}"/></svg>"#, in_css(&url)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect style="background:{}"/></svg>"#, in_css(&format!("url({js})"))),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><style>rect {{ fill: {} }}</style></svg>"#, in_css(&url)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><style>{}</style></svg>"#, in_css(&format!("@import {url};"))),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><style><![CDATA[{}]]></style></svg>"#, spelled(&format!("@import {url};"), &css_ways, css_spelling)),
                format!(r#"<svg xmlns="http://www.w3.org/2000/svg"><rect {}="alert(1)"/></svg>"#, spelled("onload", &css_ways, |c, how| if how % 2 == 0 { c.to_string() } else { c.to_ascii_uppercase().to_string() })),
            ];
            for svg in vectors {
                proptest::prop_assert!(check_svg(svg.as_bytes()).is_err(), "accepted: {}", svg);
            }
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
