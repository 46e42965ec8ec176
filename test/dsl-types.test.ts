// Type-level tests: the `@ts-expect-error` lines must fail to compile and the rest must compile.
// `compileOnly` never runs; the test below compiles this file twice with the TypeScript compiler.
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afa, afaChannel, backbone, data, experiment, l2sp, pretrain, stage, weights } from '../ts-sdk/src/index.js';

function compileOnly(): void {
  const target = data.mnist({ labelsPerClass: 10 });
  const source = pretrain({ data: data.fashionMnist() });

  experiment({ name: 'ok', backbone: backbone.smallResNet({ width: 16 }), source, target, schedule: afa() });

  // @ts-expect-error: a missing target
  experiment({ name: 'no-target', backbone: backbone.smallResNet(), source, schedule: afa() });

  // @ts-expect-error: alpha of the wrong type
  afaChannel({ alpha: '0.1' });

  // @ts-expect-error: a regulariser option that does not exist
  l2sp({ alpha: 0.1, temperature: 5 });

  // @ts-expect-error: a backbone that is not in the registry (and not torchvision:/timm:)
  experiment({ name: 'x', backbone: { name: 'resnet7' }, source, target, schedule: afa() });

  // torchvision:/timm: names are accepted as template literal types
  experiment({ name: 'tv', backbone: { name: 'torchvision:convnext_tiny' }, source: weights('/w.pt'), target, schedule: afa() });

  // @ts-expect-error: a stage needs iterations
  stage({ regularizer: l2sp({ alpha: 0.1 }) });

  // @ts-expect-error: the color mode is a closed set
  data.mnist({ color: 'cmyk' });

  // @ts-expect-error: afa() stage options are typed
  afa({ spatial: { alpha: 0.1, iterations: 'many' } });
}

void compileOnly;

/** Diagnostics of `text` compiled as this file, with the project's options. */
function diagnose(text: string): { line: number; message: string }[] {
  const config = ts.getParsedCommandLineOfConfigFile('tsconfig.json', {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => undefined })!;
  const file = fileURLToPath(import.meta.url);
  const host = ts.createCompilerHost(config.options);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => (name === file ? text : readFile(name));
  const program = ts.createProgram([file], config.options, host);
  return ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => ({
    line: d.file!.getLineAndCharacterOfPosition(d.start!).line,
    message: ts.flattenDiagnosticMessageText(d.messageText, ' '),
  }));
}

describe('DSL types', function () {
  this.timeout(60_000);

  it('each wrong spec fails to compile where it is marked, and the right ones compile', () => {
    const source = readFileSync(fileURLToPath(import.meta.url), 'utf8');
    // As written: an unused @ts-expect-error (a wrong spec that compiles) is an error too.
    expect(diagnose(source)).to.deep.equal([]);
    // Without the directives: exactly one error on the line after each of them, none elsewhere.
    const lines = source.split('\n');
    const marked = lines.flatMap((l, i) => (l.trim().startsWith('// @ts-expect-error') ? [i + 1] : []));
    const stripped = lines.map((l) => (l.trim().startsWith('// @ts-expect-error') ? '' : l)).join('\n');
    const errors = diagnose(stripped);
    expect(marked).to.have.length(7);
    expect([...new Set(errors.map((e) => e.line))], JSON.stringify(errors, null, 1)).to.deep.equal(marked);
  });
});
