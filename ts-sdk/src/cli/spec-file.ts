/** Loads an experiment (or any spec-like export) from a .json, .ts or .js file, with no build step. */
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FieldError, InvalidSpecError, UsageError } from '../errors.js';
import { registerExperimentHooks } from './module-hooks.js';

let hooksRegistered = false;

/** tsx first, then ours: the hook registered last runs first and defers to tsx for the rest. */
async function ensureHooks(entryPath: string): Promise<void> {
  if (hooksRegistered) return;
  const { register } = await import('tsx/esm/api');
  register();
  registerExperimentHooks(entryPath);
  hooksRegistered = true;
}

/** The one line that says what to do when Node still sees CommonJS where the file has `import`. */
function formatHint(message: string): string {
  if (!/require\(\) (of )?ES Module|ERR_REQUIRE_ESM|Cannot use import statement outside a module/.test(message)) return '';
  return ` (a file it imports is treated as CommonJS: name it .mjs/.mts, or add "type": "module" to its package.json)`;
}

/** The file's default export (or its only export), or the parsed JSON. Not yet validated. */
export async function loadSpecFile(file: string): Promise<unknown> {
  const path = resolve(file);
  const ext = extname(path);
  if (ext === '.json') {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw new UsageError(file, `cannot read: ${(error as Error).message}`);
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new InvalidSpecError(file, `is not valid JSON: ${(error as Error).message}`);
    }
  }
  if (!['.ts', '.mts', '.js', '.mjs'].includes(ext)) {
    throw new UsageError(file, `unsupported file type ${ext || '(none)'}`, ['.ts', '.mts', '.js', '.mjs', '.json']);
  }
  await ensureHooks(path);
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    const e = error as Error;
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && e.message.includes(path)) {
      throw new UsageError(file, 'does not exist');
    }
    if (e instanceof FieldError) throw e;
    const first = e.message.split('\n')[0];
    throw new InvalidSpecError(file, `failed to load: ${first}${formatHint(e.message)}`);
  }
  if (module.default !== undefined) return module.default;
  const values = Object.values(module);
  if (values.length === 1) return values[0];
  throw new InvalidSpecError(file, `must export a spec as its default export (found exports: ${Object.keys(module).join(', ') || 'none'})`);
}
