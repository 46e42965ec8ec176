/** Loads an experiment (or any spec-like export) from a .json, .ts or .js file, with no build step. */
import { readFile } from 'node:fs/promises';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FieldError, InvalidSpecError, UsageError } from '../errors.js';

let tsxRegistered = false;

async function ensureTsx(): Promise<void> {
  if (tsxRegistered) return;
  const { register } = await import('tsx/esm/api');
  register();
  tsxRegistered = true;
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
  if (ext.endsWith('ts')) await ensureTsx();
  let module: Record<string, unknown>;
  try {
    module = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  } catch (error) {
    const e = error as Error;
    if ((e as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && e.message.includes(path)) {
      throw new UsageError(file, 'does not exist');
    }
    if (e instanceof FieldError) throw e;
    throw new InvalidSpecError(file, `failed to load: ${e.message.split('\n')[0]}`);
  }
  if (module.default !== undefined) return module.default;
  const values = Object.values(module);
  if (values.length === 1) return values[0];
  throw new InvalidSpecError(file, `must export a spec as its default export (found exports: ${Object.keys(module).join(', ') || 'none'})`);
}
