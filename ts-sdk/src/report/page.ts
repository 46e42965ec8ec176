/** What every report page shares: its stylesheet and HTML escaping. */

export const CSS = `body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1360px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}svg{background:#fff;border:1px solid #e4e4e4;max-width:100%;height:auto}
.title{font-size:13px;font-weight:600}.tick{font-size:10px;fill:#555}.label{font-size:11px;fill:#333}.legend{font-size:10px}
.axis{stroke:#333}.grid{stroke:#eee}pre{background:#f7f7f7;padding:10px;overflow-x:auto;font-size:12px}.muted{color:#666}
table{border-collapse:collapse;font-size:13px;margin:6px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums}table.heat img{image-rendering:pixelated;display:block}
table.heat th{font-weight:600;font-size:12px}.scroll{overflow-x:auto}.small{font-size:11px}`;

export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
