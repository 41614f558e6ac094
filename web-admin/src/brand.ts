// The brand of the host the app is served on: a tenant's custom hostname gives
// that tenant's name, logo, colours and favicon; any other host the
// operator's. Nothing is hard-coded: the app shows what the API says.
import { useEffect, useState } from "preact/hooks";
import type { Schemas } from "./api";
import { adoptBrandLanguage } from "./i18n";

export type Brand = Schemas["PublicBrand"];

export function useBrand(): Brand | null {
  const [brand, setBrand] = useState<Brand | null>(null);
  useEffect(() => {
    fetch("/v1/public/branding", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? (r.json() as Promise<Brand>) : ({} as Brand)))
      .catch(() => ({}) as Brand)
      .then((b) => {
        applyBrand(b);
        setBrand(b);
      });
  }, []);
  return brand;
}

export function applyBrand(brand: Brand): void {
  const root = document.documentElement.style;
  if (brand.primary_color) root.setProperty("--primary", brand.primary_color);
  if (brand.accent_color) root.setProperty("--accent", brand.accent_color);
  adoptBrandLanguage(brand.default_language);
  if (brand.favicon_url) {
    let link = document.querySelector<HTMLLinkElement>("link[rel='icon']");
    if (!link) {
      link = document.createElement("link");
      link.rel = "icon";
      document.head.append(link);
    }
    link.href = brand.favicon_url;
  }
}

export function productName(brand: Brand | null): string {
  return brand?.product_name?.trim() || "";
}
