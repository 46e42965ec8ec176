/** Reading and writing spec fields by path: `a.b[2].c`. */

export function parsePath(path: string): (string | number)[] {
  const parts: (string | number)[] = [];
  const re = /([^.[\]]+)|\[(\d+)\]/g;
  let match: RegExpExecArray | null;
  let consumed = 0;
  while ((match = re.exec(path)) !== null) {
    parts.push(match[2] !== undefined ? Number(match[2]) : match[1]!);
    consumed += match[0].length;
  }
  const separators = (path.match(/\./g) ?? []).length;
  if (!parts.length || consumed + separators !== path.length) throw new Error(`malformed path ${JSON.stringify(path)}`);
  return parts;
}

export function getPath(value: unknown, path: string): unknown {
  let node: unknown = value;
  for (const key of parsePath(path)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[key];
  }
  return node;
}

/** A deep copy of `value` with the field at `path` set; the path's parents must exist. */
export function setPath<T>(value: T, path: string, fieldValue: unknown): T {
  const copy = structuredClone(value) as unknown;
  const keys = parsePath(path);
  let node = copy as Record<string | number, unknown>;
  for (const [i, key] of keys.slice(0, -1).entries()) {
    const next = node[key];
    if (next === null || typeof next !== 'object') {
      throw new Error(`${keys.slice(0, i + 1).join('.')} does not exist in the base spec`);
    }
    node = next as Record<string | number, unknown>;
  }
  node[keys.at(-1)!] = structuredClone(fieldValue);
  return copy as T;
}
