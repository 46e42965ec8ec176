/**
 * What every report page shares: its stylesheet, its Content-Security-Policy, and the one way
 * markup is written. Every value interpolated into `html`...`` is escaped (text and attribute
 * values alike: & < > " '), unless it is itself `Html` built the same way; numbers that are not
 * finite print as text. No report builds markup by string concatenation, so a label, a layer
 * name or a path from a results file can never become markup.
 */

export const CSS = `body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}svg{background:#fff;border:1px solid #e4e4e4;max-width:100%;height:auto}
.title{font-size:13px;font-weight:600}.tick{font-size:10px;fill:#555}.label{font-size:11px;fill:#333}.legend{font-size:10px}
.axis{stroke:#333}.grid{stroke:#eee}pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}.muted{color:#666}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}table.heat img{image-rendering:pixelated;display:block}
table.heat th{font-weight:600;font-size:12px}.scroll{overflow-x:auto}.small{font-size:11px}`;

/**
 * The page runs no script at all: none is allowed, inline or fetched, and nothing else is fetched
 * either (images are data: URLs, styles inline); no forms, no <base>.
 */
export const CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Markup built by `html` (or the page's own constants): the only thing interpolated unescaped. */
export class Html {
  constructor(private readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type Interpolation = Html | string | number | boolean | null | undefined | readonly Interpolation[];

function render(value: Interpolation): string {
  if (value instanceof Html) return value.toString();
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : esc(String(value));
  return esc(String(value));
}

/** Markup with every interpolated value escaped (arrays are joined, each item escaped). */
export function html(strings: TemplateStringsArray, ...values: Interpolation[]): Html {
  let out = strings[0]!;
  values.forEach((v, i) => {
    out += render(v) + strings[i + 1]!;
  });
  return new Html(out);
}

/** Markup pieces one after another, with a separator that is itself escaped. */
export function joinHtml(parts: readonly Html[], separator = ''): Html {
  return new Html(parts.map(String).join(esc(separator)));
}

/** A relative link target that cannot be read as a scheme (`javascript:...`): it starts with ./ or ../. */
export function relativeHref(path: string): string {
  const posix = path.split('\\').join('/');
  return posix.startsWith('../') || posix.startsWith('./') ? posix : `./${posix}`;
}

/** A whole self-contained page: charset, viewport, the policy, the stylesheet. */
export function page(title: string, body: Html): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${CONTENT_SECURITY_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><style>${new Html(CSS)}</style></head><body>
${body}
</body></html>
`.toString();
}
