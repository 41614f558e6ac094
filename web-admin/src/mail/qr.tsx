// A QR code drawn as inline SVG (uqr computes the modules; no image is
// fetched and nothing is injected as markup): one path of dark squares on a
// white ground, with its quiet zone, so a phone's camera reads it on any theme.
import { encode } from "uqr";

/** The SVG path of a QR code's dark modules, one unit square each (exported for tests). */
export function qrPath(text: string): { size: number; d: string } {
  const { size, data } = encode(text, { ecc: "M", border: 4 });
  let d = "";
  data.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (dark) d += `M${x} ${y}h1v1h-1z`;
    }),
  );
  return { size, d };
}

export function QrCode({ text, label }: { text: string; label: string }) {
  const { size, d } = qrPath(text);
  return (
    <svg class="qr" role="img" aria-label={label} viewBox={`0 0 ${size} ${size}`} width={Math.max(160, size * 4)} height={Math.max(160, size * 4)} shape-rendering="crispEdges" data-testid="qr">
      <rect width={size} height={size} fill="#fff" />
      <path d={d} fill="#000" />
    </svg>
  );
}
