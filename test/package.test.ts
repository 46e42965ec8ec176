// The npm package as a user meets it: `npm pack`, installed into an ordinary Node project (what
// `npm init -y` makes: no "type": "module"), `afa worker setup` into a fresh AFA_HOME with the
// wheels pip is configured to use, then `afa run` of experiments in that project and in a folder
// outside any package. Slow (a venv with torch is installed), and the only test of that path.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;

const EXPERIMENT = `import { experiment, backbone, data, pretrain, baseline } from 'afa-transfer';
export default experiment({
  name: 'consumer-NAME',
  backbone: backbone.smallResNet({ width: 8 }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 10 }), iterations: 8, batchSize: 32 }),
  target: data.mnist({ labelsPerClass: 5, valPerClass: 5, testPerClass: 10 }),
  schedule: baseline.fineTune({ iterations: 4, evalEvery: 2, logEvery: 2 }),
});
`;

describe('the npm package in a consumer project (slow: npm pack, npm install, afa worker setup)', function () {
  this.timeout(900_000);
  const root = tempDir('afa-consumer-');
  const project = join(root, 'project');
  const loose = join(root, 'loose');
  const home = join(root, 'afa-home');
  // An empty package index: `--torch-index` must reach pip (torch itself comes from the configured links).
  const index = join(root, 'simple');
  const env = {
    AFA_HOME: home, AFA_CACHE: join(root, 'cache'), AFA_PYTHON: '', AFA_TOKEN: '', AFA_EXAMPLES_QUICK: '',
    npm_config_update_notifier: 'false', ONNXRUNTIME_NODE_INSTALL: 'skip',
  };
  const sh = async (file: string, args: string[], options: { cwd?: string } = {}) => {
    const r = await execa(file, args, { reject: false, all: true, env, cwd: options.cwd });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr, all: r.all };
  };
  const afa = (args: string[], cwd = project) => sh(join(project, 'node_modules', '.bin', 'afa'), args, { cwd });

  before(async () => {
    mkdirSync(project, { recursive: true });
    mkdirSync(loose, { recursive: true });
    mkdirSync(index, { recursive: true });
    const pack = await sh('npm', ['pack', '--pack-destination', root]);
    expect(pack.exitCode, pack.all).to.equal(0);
    const tarball = readdirSync(root).find((f) => f.endsWith('.tgz'))!;
    expect((await sh('npm', ['init', '-y'], { cwd: project })).exitCode).to.equal(0);
    const install = await sh('npm', ['install', '--no-audit', '--no-fund', join(root, tarball)], { cwd: project });
    expect(install.exitCode, install.all).to.equal(0);
    for (const name of ['cjs', 'js']) {
      writeFileSync(join(project, `exp-${name}.${name === 'js' ? 'js' : 'ts'}`), EXPERIMENT.replace('NAME', name));
    }
    // Outside any package, a subpath import resolves to the CLI's own copy as the root does.
    writeFileSync(join(loose, 'exp.ts'), `import { formatTable } from 'afa-transfer/report';\n${EXPERIMENT.replace('NAME', "loose-' + formatTable(['a'], []).length + '")}`);
  });

  it('a project made by npm init -y is not "type": "module" (the case the loader must handle)', () => {
    expect(JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')).type).to.not.equal('module');
  });

  it('require() and import of the root and every subpath work in a CommonJS project; internals are not importable', async () => {
    const names = "[typeof a.experiment, typeof a.Worker, typeof s.runSweep, typeof s.planSlots, typeof r.Progress, typeof r.renderReport, " +
      'typeof p.WorkerClient, typeof p.CreateSessionRequest].join(" ")';
    writeFileSync(join(project, 'use.cjs'), "const a = require('afa-transfer'); const s = require('afa-transfer/sweep'); " +
      `const r = require('afa-transfer/report'); const p = require('afa-transfer/proto'); console.log(${names});\n`);
    writeFileSync(join(project, 'use.mjs'), "import * as a from 'afa-transfer'; import * as s from 'afa-transfer/sweep'; " +
      `import * as r from 'afa-transfer/report'; import * as p from 'afa-transfer/proto'; console.log(${names});\n`);
    for (const file of ['use.cjs', 'use.mjs']) {
      const run = await sh(process.execPath, [file], { cwd: project });
      expect(run.exitCode, run.all).to.equal(0);
      expect(run.stdout.trim(), file).to.equal(Array(8).fill('function').join(' ').replace(/function$/, 'object'));
    }
    writeFileSync(join(project, 'internal.cjs'), "require('afa-transfer/dist/sweep/runner.js');\n");
    const internal = await sh(process.execPath, ['internal.cjs'], { cwd: project });
    expect(internal.all).to.include('ERR_PACKAGE_PATH_NOT_EXPORTED');
  });

  it('afa worker setup --torch cpu --torch-index creates a stamped venv, and a second setup does nothing', async () => {
    const setup = await afa(['worker', 'setup', '--torch', 'cpu', '--torch-index', `file://${index}`]);
    expect(setup.exitCode, setup.all).to.equal(0);
    expect(setup.all).to.include(`Looking in indexes: file://${index}`);
    expect(setup.stdout).to.include(`worker environment ready: ${join(home, 'venv', 'bin', 'python')}`);
    expect(setup.stdout).to.match(new RegExp(`afa-worker ${PACKAGE_VERSION}, torch \\S+ \\(CPU only\\)`));
    const stamp = JSON.parse(readFileSync(join(home, 'venv', 'afa-worker-setup.json'), 'utf8')) as { version: string; torch: string };
    expect(stamp).to.include({ version: PACKAGE_VERSION, torch: 'cpu' });
    const again = await afa(['worker', 'setup']);
    expect(again.exitCode, again.all).to.equal(0);
    expect(again.stdout).to.include('worker environment already up to date');
    expect(again.all).to.not.include('Looking in');
  });

  it('afa info shows the venv the SDK resolved, the torch build and the devices', async () => {
    const info = await afa(['info']);
    expect(info.exitCode, info.all).to.equal(0);
    expect(info.stdout).to.include(join(home, 'venv', 'bin', 'python'));
    expect(info.stdout).to.match(/torch +\S+ \(CPU only\)/);
    expect(info.stdout).to.match(/device +cpu:0 /);
  });

  it('afa run loads a .ts experiment with import syntax in a CommonJS project', async () => {
    const run = await afa(['run', 'exp-cjs.ts', '--threads', '1']);
    expect(run.exitCode, run.all).to.equal(0);
    expect(run.stdout).to.include('consumer-cjs');
    expect(run.stdout).to.match(/test \d+\.\d%/);
  });

  it('afa run loads a .js experiment with import syntax in a CommonJS project', async () => {
    const run = await afa(['run', 'exp-js.js', '--threads', '1']);
    expect(run.exitCode, run.all).to.equal(0);
    expect(run.stdout).to.include('consumer-js');
  });

  it('afa run loads an experiment in a folder outside any package, importing the CLI\'s own afa-transfer', async () => {
    const run = await afa(['run', join(loose, 'exp.ts'), '--threads', '1'], loose);
    expect(run.exitCode, run.all).to.equal(0);
    expect(run.stdout).to.include('consumer-loose-');
  });

  it('train, export, serve: afa run --checkpoint, afa export --onnx, afa predict and loadModel().predict() with no Python', async () => {
    const run = await afa(['run', 'exp-cjs.ts', '--threads', '1', '--checkpoint', join(project, 'model.safetensors')]);
    expect(run.exitCode, run.all).to.equal(0);
    const exported = await afa(['export', join(project, 'model.safetensors'), '--onnx', join(project, 'model.onnx')]);
    expect(exported.exitCode, exported.all).to.equal(0);
    // The optional peers a Node service installs for inference (onnxruntime-node's CPU binaries are in the package).
    const peers = await sh('npm', ['install', '--no-audit', '--no-fund', 'onnxruntime-node@1.30.0', 'sharp@0.35.5'], { cwd: project });
    expect(peers.exitCode, peers.all).to.equal(0);
    const png = readFileSync('docs/img/run-report-1400.png'); // any real image: the model resizes and greys it
    writeFileSync(join(project, 'image.png'), png);
    const predicted = await afa(['predict', join(project, 'model.onnx'), join(project, 'image.png'), '--json']);
    expect(predicted.exitCode, predicted.all).to.equal(0);
    expect((JSON.parse(predicted.stdout) as Array<{ top: unknown[] }>)[0]!.top).to.have.length(3);
    writeFileSync(join(project, 'serve.cjs'), "const { loadModel } = require('afa-transfer'); const { readFileSync } = require('node:fs');\n" +
      "loadModel('model.onnx').then((m) => m.predict(readFileSync('image.png'))).then(([p]) => console.log(p.name, p.probability > 0));\n");
    const inNode = await sh(process.execPath, ['serve.cjs'], { cwd: project });
    expect(inNode.exitCode, inNode.all).to.equal(0);
    expect(inNode.stdout.trim()).to.match(/^\d true$/);
  });

  it('afa sweep --search tpe --early-stop asha in the consumer project: Optuna from the worker setup, the budget run, a study on disk', async () => {
    writeFileSync(join(project, 'search.ts'), `import { logUniform, sweep } from 'afa-transfer';\nimport base from './exp-cjs';\n` +
      "export default sweep({ name: 'consumer-search', base, space: { 'schedule[0].optimizer.lr': logUniform(0.001, 0.1) }, budget: 3 });\n");
    const out = join(project, 'search-out');
    const run = await afa(['sweep', 'search.ts', '--search', 'tpe', '--early-stop', 'asha', '--threads', '1', '--out', out]);
    expect(run.exitCode, run.all).to.equal(0);
    expect(readFileSync(join(out, 'results.jsonl'), 'utf8').trim().split('\n')).to.have.length(3);
    expect(existsSync(join(out, 'study.journal'))).to.equal(true);
    expect(run.stdout).to.match(/best configuration \(runnable: afa run/);
  });

  it('a venv set up by another version is refused with the command that fixes it, and setup reinstalls', async () => {
    const stampFile = join(home, 'venv', 'afa-worker-setup.json');
    const stamp = JSON.parse(readFileSync(stampFile, 'utf8')) as Record<string, string>;
    writeFileSync(stampFile, JSON.stringify({ ...stamp, version: '0.0.1' }));
    const refused = await afa(['run', 'exp-cjs.ts', '--threads', '1']);
    expect(refused.exitCode).to.equal(1);
    expect(refused.stderr).to.include(`set up by afa-transfer 0.0.1, this is ${PACKAGE_VERSION}`);
    expect(refused.stderr).to.include('Run `npx afa worker setup`');
    const setup = await afa(['worker', 'setup']);
    expect(setup.exitCode, setup.all).to.equal(0);
    expect(setup.stdout).to.include('worker environment ready');
    expect(JSON.parse(readFileSync(stampFile, 'utf8'))).to.include({ version: PACKAGE_VERSION, torch: 'cpu' });
    const run = await afa(['run', 'exp-cjs.ts', '--threads', '1']);
    expect(run.exitCode, run.all).to.equal(0);
  });
});
