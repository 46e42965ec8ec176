// The layout as a reader meets it: floors that only point down (cli -> report -> sweep -> worker ->
// run -> client/dsl -> leaves), errors that know no transport, one module that spawns processes,
// and functions short enough to read at a glance, in the SDK and in the worker.
import { expect } from 'chai';
import { execa } from 'execa';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const SRC = 'ts-sdk/src';
/** Each top-level folder (or leaf file) of the SDK and its floor: a module imports only from lower floors or its own. */
const FLOORS: Record<string, number> = {
  'index.ts': 7, 'proto.ts': 7, cli: 6, report: 5, sweep: 4, worker: 3, run: 2, client: 1, dsl: 1, model: 1,
  'errors.ts': 0, 'fields.ts': 0.5, 'paths.ts': 0, 'atomic-write.ts': 0, 'table.ts': 0, 'png.ts': 0, gen: 0,
};
/** Longest function, in lines, a reader should meet. */
const MAX_FUNCTION_LINES = 60;

function sources(dir: string, skip: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === skip || name === '__pycache__' ? [] : sources(path, skip);
    return [path];
  });
}

const tsFiles = sources(SRC, 'gen').filter((p) => p.endsWith('.ts'));
const topOf = (path: string) => relative(SRC, path).split('/')[0]!;

describe('architecture (no worker)', () => {
  it('every SDK module sits on a floor and imports only from its own floor or lower ones', () => {
    const upward: string[] = [];
    for (const file of tsFiles) {
      const from = topOf(file);
      expect(FLOORS, `${from} has no floor in this test`).to.have.property(from);
      for (const m of readFileSync(file, 'utf8').matchAll(/from '(\.[^']+)'/g)) {
        const to = topOf(relative(process.cwd(), resolve(dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
        if (to !== from && FLOORS[to]! >= FLOORS[from]!) upward.push(`${relative(SRC, file)} imports ${m[1]} (${from} -> ${to})`);
      }
    }
    expect(upward).to.deep.equal([]);
  });

  it('the typed errors know no transport: errors.ts imports nothing', () => {
    expect(readFileSync(join(SRC, 'errors.ts'), 'utf8')).to.not.match(/^import /m);
  });

  it('only the one door to Python spawns processes (no execa, child_process or spawn elsewhere in the SDK)', () => {
    const spawning = tsFiles.filter((f) => f !== join(SRC, 'worker', 'python-process.ts'))
      .filter((f) => /\bexeca\(|from 'execa'|child_process|\bspawn\(/.test(readFileSync(f, 'utf8')));
    expect(spawning).to.deep.equal([]);
  });

  it(`no SDK function is longer than ${MAX_FUNCTION_LINES} lines`, () => {
    const long: string[] = [];
    for (const file of tsFiles) {
      const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      const visit = (node: ts.Node) => {
        if (ts.isFunctionLike(node) && 'body' in node && node.body) {
          const start = source.getLineAndCharacterOfPosition(node.getStart()).line;
          const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
          if (end - start + 1 > MAX_FUNCTION_LINES) {
            const name = (node as ts.FunctionDeclaration).name?.getText() ?? `(anonymous at line ${start + 1})`;
            long.push(`${relative(SRC, file)}: ${name} ${end - start + 1} lines`);
          }
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
    }
    expect(long).to.deep.equal([]);
  });

  it(`no worker function is longer than ${MAX_FUNCTION_LINES} lines`, async () => {
    const script = `import ast, pathlib, sys
for path in sorted(pathlib.Path('python-worker/afa_worker').rglob('*.py')):
    if '_gen' in path.parts: continue
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > ${MAX_FUNCTION_LINES}:
            print(f"{path}: {node.name} {node.end_lineno - node.lineno + 1} lines")`;
    const { stdout } = await execa('python-worker/.venv/bin/python', ['-c', script]);
    expect(stdout.split('\n').filter(Boolean)).to.deep.equal([]);
  });
});
