// Layout checks a person would make, done by a browser: headless Chromium lays a report out at a
// given window width and a script in the page measures every chart's text; the result comes back
// through --dump-dom. Used on the committed reports and on freshly written ones.
import { execa } from 'execa';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

export interface Overlap {
  chart: string;
  a: string;
  b: string;
}

export interface Layout {
  /** Pairs of text elements in one chart whose boxes intersect (by more than a pixel each way). */
  overlaps: Overlap[];
  /** Chart text reaching outside its chart, where the SVG cuts it off. */
  clipped: { chart: string; text: string }[];
  /** The page is wider than the window (a horizontal scroll bar). */
  overflowX: boolean;
  charts: number;
  images: number;
  /** Images that did not decode (a broken data: URL). */
  brokenImages: number;
}

const PROBE = `<script>
window.addEventListener('load', () => {
  const overlaps = [], clipped = [];
  for (const svg of document.querySelectorAll('svg')) {
    const texts = [...svg.querySelectorAll('text')].map((t) => ({ t: t.textContent.trim(), r: t.getBoundingClientRect() }))
      .filter((x) => x.t && x.r.width > 0);
    const box = svg.getBoundingClientRect();
    for (const x of texts) {
      if (x.r.left < box.left - 1 || x.r.right > box.right + 1 || x.r.top < box.top - 1 || x.r.bottom > box.bottom + 1) {
        clipped.push({ chart: svg.dataset.chart || '', text: x.t });
      }
    }
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i].r, b = texts[j].r;
      const dx = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const dy = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (dx > 1 && dy > 1) overlaps.push({ chart: svg.dataset.chart || '', a: texts[i].t, b: texts[j].t });
    }
  }
  const images = [...document.images];
  document.body.setAttribute('data-layout', JSON.stringify({
    overlaps, clipped, overflowX: document.documentElement.scrollWidth > window.innerWidth + 1,
    charts: document.querySelectorAll('svg').length, images: images.length,
    brokenImages: images.filter((i) => !i.complete || i.naturalWidth === 0).length,
  }));
});
</script>`;

export function findChromium(): string | undefined {
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
}

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--hide-scrollbars'];

/** Lays the HTML file out at `width` px and measures it. */
export async function measureLayout(htmlFile: string, width: number): Promise<Layout> {
  const probe = join(tempDir('afa-layout-'), 'page.html');
  // The report's policy forbids every script, this probe included: the copy it measures drops the policy.
  const page = readFileSync(htmlFile, 'utf8').replace(/<meta http-equiv="Content-Security-Policy"[^>]*>/, '');
  writeFileSync(probe, page.replace('</body>', `${PROBE}</body>`));
  const chromium = findChromium()!;
  const result = await execa(chromium, [...FLAGS, `--user-data-dir=${tempDir()}`, `--window-size=${width},1200`, '--dump-dom',
    `file://${probe}`], { reject: false, timeout: 60_000 });
  const match = /data-layout="([^"]*)"/.exec(result.stdout);
  if (!match) throw new Error(`chromium printed no layout for ${htmlFile}: ${result.stderr.slice(-500)}`);
  const json = match[1]!.replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  return JSON.parse(json) as Layout;
}

/** The DOM Chromium builds from the file as it is (its policy in force), serialised. */
export async function dumpDom(htmlFile: string): Promise<string> {
  const chromium = findChromium()!;
  const result = await execa(chromium, [...FLAGS, `--user-data-dir=${tempDir()}`, '--dump-dom', `file://${htmlFile}`], { reject: false, timeout: 60_000 });
  if (!result.stdout.includes('</html>')) throw new Error(`chromium printed no DOM for ${htmlFile}: ${result.stderr.slice(-500)}`);
  return result.stdout;
}

/** A full-page screenshot at `width` px (height as given), for a person to look at. */
export async function screenshot(htmlFile: string, png: string, width: number, height: number): Promise<void> {
  const chromium = findChromium()!;
  const shot = await execa(chromium, [...FLAGS, `--user-data-dir=${tempDir()}`, `--window-size=${width},${height}`,
    `--screenshot=${png}`, `file://${htmlFile}`], { reject: false, timeout: 60_000 });
  if (!existsSync(png)) throw new Error(`no screenshot: ${shot.stderr.slice(-500)}`);
}
