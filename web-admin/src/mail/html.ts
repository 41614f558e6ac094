// HTML mail made safe to show: DOMPurify removes scripts, event handlers,
// forms and frames; remote images, stylesheets and `url()` in styles are
// held back until the person allows remote content (they tell a sender
// that, when and where the mail was opened); `cid:` images come from the
// message's own parts. The result goes into a sandboxed frame without
// scripts, whose own Content-Security-Policy blocks whatever slipped through.
import DOMPurify from "dompurify";
import type { Attachment } from "./reading";

export interface SafeHtml {
  /** A whole document for `<iframe srcdoc>`. */
  document: string;
  /** How many remote resources were held back. */
  blocked: number;
}

const REMOTE = /^\s*(https?:)?\/\//i;
const URL_IN_CSS = /url\s*\(\s*(['"]?)(.*?)\1\s*\)/gi;
const IMPORT_IN_CSS = /@import\s+[^;]+;?/gi;

function dataUrl(part: Attachment): string {
  let binary = "";
  for (const b of part.bytes) binary += String.fromCharCode(b);
  return `data:${part.mimeType};base64,${btoa(binary)}`;
}

/** What the frame may load: inline styles and images carried in the message, and remote images once allowed. */
export function frameCsp(allowRemote: boolean): string {
  const images = allowRemote ? "data: https:" : "data:";
  return `default-src 'none'; img-src ${images}; style-src 'unsafe-inline'; font-src data:; form-action 'none'`;
}

export function sanitizeHtml(html: string, attachments: Attachment[], allowRemote: boolean): SafeHtml {
  const byCid = new Map(attachments.filter((a) => a.contentId).map((a) => [a.contentId!, a]));
  let blocked = 0;
  const css = (text: string) => {
    let out = text.replace(IMPORT_IN_CSS, () => {
      blocked++;
      return "";
    });
    out = out.replace(URL_IN_CSS, (whole, _q: string, url: string) => {
      if (url.startsWith("data:")) return whole;
      if (REMOTE.test(url) && allowRemote && url.startsWith("https:")) return whole;
      blocked++;
      return "none";
    });
    return out;
  };
  const purify = DOMPurify();
  purify.addHook("uponSanitizeElement", (node) => {
    if (node.nodeName === "STYLE" && node.textContent) node.textContent = css(node.textContent);
  });
  purify.addHook("afterSanitizeAttributes", (node) => {
    const element = node as Element;
    for (const name of ["src", "background", "poster", "srcset"]) {
      const value = element.getAttribute?.(name);
      if (value === null || value === undefined) continue;
      if (value.startsWith("cid:")) {
        const part = byCid.get(value.slice(4).replace(/^<|>$/g, ""));
        if (part) element.setAttribute(name, dataUrl(part));
        else element.removeAttribute(name);
      } else if (value.startsWith("data:")) {
        continue;
      } else if (allowRemote && value.trim().startsWith("https:") && name !== "srcset") {
        continue;
      } else {
        blocked++;
        element.removeAttribute(name);
      }
    }
    const style = element.getAttribute?.("style");
    if (style) element.setAttribute("style", css(style));
    if (element.nodeName === "A" && element.getAttribute("href")) {
      element.setAttribute("target", "_blank");
      element.setAttribute("rel", "noopener noreferrer");
    }
  });
  const body = purify.sanitize(html, {
    WHOLE_DOCUMENT: false,
    // A <style> first in the message stays (it would otherwise go to the dropped <head>).
    FORCE_BODY: true,
    FORBID_TAGS: ["form", "input", "button", "textarea", "select", "iframe", "frame", "object", "embed", "link", "meta", "base", "video", "audio"],
    FORBID_ATTR: ["action", "formaction", "ping"],
    ALLOW_DATA_ATTR: false,
  });
  const document = `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${frameCsp(allowRemote)}"><meta name="referrer" content="no-referrer"><base target="_blank"><style>body{margin:0;padding:1rem;font-family:system-ui,sans-serif;overflow-wrap:anywhere}img{max-width:100%;height:auto}</style></head><body>${body}</body></html>`;
  return { document, blocked };
}
