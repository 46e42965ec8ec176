/**
 * Module hooks that let `afa run exp.ts` load an experiment written in ES module syntax wherever it
 * lives: in a project without `"type": "module"` (what `npm init -y` makes), in a folder outside any
 * package, or next to a `node_modules` that does not hold `afa-transfer`.
 *
 * Node decides a file's format from the nearest package.json, so a `.ts` file with `import` lines in
 * a CommonJS project is handed to `require()`, which fails ("Cannot require() ES Module ... in a
 * cycle"). The hook runs before tsx's and says `module` for the user's TypeScript files (outside
 * node_modules; `.cts` stays CommonJS) and for the entry file itself, whatever its extension.
 * `import ... from 'afa-transfer'` (or a subpath: `afa-transfer/sweep`, `/report`, `/proto`) that
 * does not resolve from the file's folder resolves to the copy of the package running this CLI.
 *
 * The hook source is a data: URL so it loads in Node's hooks thread from `dist/` and from the
 * repository (tsx) alike, with no file of its own to find.
 */
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const PACKAGE_NAME = 'afa-transfer';
/** The package's entry points (package.json's `exports`), relative to the package's source root. */
const SUBPATHS: Record<string, string> = { '': 'index.js', sweep: 'sweep/index.js', report: 'report/index.js', proto: 'proto.js' };

const HOOKS = `
let entry, own;
export function initialize(data) { ({ entry, own } = data); }
const typescript = /\\.(ts|mts|tsx)$/;
export async function resolve(specifier, context, next) {
  let resolved;
  try {
    resolved = await next(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !(specifier in own)) throw error;
    resolved = await next(own[specifier], context);
  }
  const url = resolved.url;
  if (!url.startsWith('file:') || url.includes('/node_modules/')) return resolved;
  const path = new URL(url).pathname;
  if (url === entry || typescript.test(path)) return { ...resolved, format: 'module' };
  return resolved;
}
`;

let registered = false;

/** Registers the hooks once per process; `entryPath` is the file the user named. */
export function registerExperimentHooks(entryPath: string): void {
  if (registered) return;
  registered = true;
  // In dist/ these are dist/index.js, ...; from the repository tsx maps them to ts-sdk/src/*.ts.
  const own = Object.fromEntries(Object.entries(SUBPATHS).map(([sub, file]) =>
    [sub ? `${PACKAGE_NAME}/${sub}` : PACKAGE_NAME, new URL(`../${file}`, import.meta.url).href]));
  register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, {
    data: { entry: pathToFileURL(entryPath).href, own },
  });
}
