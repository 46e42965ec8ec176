// The CLI as a person (or a pipeline) runs it: real worker, real data, real exit codes.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AFA_CLI, tempDir, waitUntil } from './helpers.js';
import { tinyFineTune } from './fixtures/specs.js';
import { afaChannel, experiment, featureMap, REGULARIZER_KINDS, relative, sgd, stage, type ExperimentResult } from '../ts-sdk/src/index.js';

const [node, cliArgs] = AFA_CLI;

function afa(args: string[], options: { env?: Record<string, string> } = {}) {
  return execa(node, [...cliArgs, ...args], { reject: false, env: { AFA_EXAMPLES_QUICK: '1', ...options.env }, all: false });
}

const PACKAGE_VERSION = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;

describe('afa CLI', () => {
  it('afa --version prints the version in package.json', async () => {
    const result = await afa(['--version']);
    expect(result.stdout.trim()).to.equal(PACKAGE_VERSION);
  });

  it('afa run spec.json --json prints the typed result; progress goes to stderr as plain lines', async () => {
    const dir = tempDir();
    const file = join(dir, 'spec.json');
    writeFileSync(file, JSON.stringify(tinyFineTune()));
    const result = await afa(['run', file, '--json', '--threads', '1']);
    expect(result.exitCode, result.stderr).to.equal(0);
    const parsed = JSON.parse(result.stdout) as { name: string; stages: { status: string }[]; testAccuracy: number };
    expect(parsed.name).to.equal('tiny-fine-tune');
    expect(parsed.stages[0]!.status).to.equal('completed');
    expect(parsed.testAccuracy).to.be.within(0, 1);
    // not a terminal: one plain line per evaluation, no bar redraws
    expect(result.stderr).to.match(/none step 3\/6 {2}val \d+\.\d%/);
    expect(result.stderr).to.not.include('\r');
  });

  it('afa run file.ts runs a TypeScript experiment with no build step and prints a result table', async () => {
    const result = await afa(['run', 'examples/quickstart.ts', '--threads', '1']);
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/stage\s+regularizer\s+steps\s+best val/);
    expect(result.stdout).to.match(/afa-spatial\s+afa_spatial\s+6/);
    expect(result.stdout).to.match(/selected model: val \d+\.\d%, test \d+\.\d%/);
  });

  it('a bad spec exits 2 with one clear line naming the field', async () => {
    const dir = tempDir();
    const file = join(dir, 'bad.json');
    const spec = JSON.parse(JSON.stringify(tinyFineTune())) as { schedule: { regularizer: unknown }[] };
    spec.schedule[0]!.regularizer = { kind: 'dropout' };
    writeFileSync(file, JSON.stringify(spec));
    const result = await afa(['run', file]);
    expect(result.exitCode).to.equal(2);
    expect(result.stderr.trim()).to.equal(
      `afa run: schedule[0].regularizer.kind: unknown value "dropout" (valid: ${REGULARIZER_KINDS.join(', ')})`);
  });

  it('a 50 MB name is refused before anything is sent: exit 2, one short line naming the field', async () => {
    const file = join(tempDir(), 'huge.json');
    writeFileSync(file, JSON.stringify({ ...tinyFineTune(), name: 'x'.repeat(50_000_000) }));
    const result = await afa(['run', file, '--threads', '1']);
    expect(result.exitCode).to.equal(2);
    expect(result.stderr.trim()).to.equal('afa run: name: must be at most 200 characters, got 50000000');
  });

  it('a file that is not valid JSON or TS exits 2', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'broken.json'), '{ "name": ');
    writeFileSync(join(dir, 'broken.ts'), 'export default experiment({ name: ');
    for (const file of ['broken.json', 'broken.ts']) {
      const result = await afa(['run', join(dir, file)]);
      expect(result.exitCode, result.stderr).to.equal(2);
      expect(result.stderr).to.match(/is not valid JSON|failed to load/);
    }
    const missing = await afa(['run', join(dir, 'nope.ts')]);
    expect(missing.exitCode).to.equal(2);
    expect(missing.stderr).to.include('does not exist');
  });

  it('a spec the worker rejects (bad layer path) exits 2 with the worker\'s message', async () => {
    const dir = tempDir();
    const file = join(dir, 'layer.json');
    const spec = JSON.parse(JSON.stringify(tinyFineTune())) as { backbone: { layers?: string[] } };
    spec.backbone.layers = ['layer7.0'];
    writeFileSync(file, JSON.stringify(spec));
    const result = await afa(['run', file, '--threads', '1']);
    expect(result.exitCode).to.equal(2);
    expect(result.stderr).to.match(/afa run: backbone\.layers: 'layer7\.0' is not a module of this backbone \(valid: conv1, bn1/); // named as the spec spells it
  });

  it('SIGINT cancels the running stage and exits 130', async () => {
    const dir = tempDir();
    const file = join(dir, 'long.json');
    writeFileSync(file, JSON.stringify(tinyFineTune(1_000_000)));
    const child = execa(node, [...cliArgs, 'run', file, '--threads', '1'], { reject: false });
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (chunk: Buffer) => {
        if (/tiny|none: 1000000 steps/.test(String(chunk))) resolve();
      });
    });
    child.kill('SIGINT'); // the stage has started: the cancel must reach it wherever it is
    const result = await child;
    expect(result.exitCode).to.equal(130);
    expect(result.stderr).to.include('interrupted');
  });

  it('killing the tsx wrapper (SIGKILL) stops the CLI it started and the CLI\'s worker', async () => {
    const file = join(tempDir(), 'long.json');
    writeFileSync(file, JSON.stringify(tinyFineTune(1_000_000)));
    const wrapper = execa('node_modules/.bin/tsx', ['ts-sdk/src/cli/main.ts', 'run', file, '--threads', '1'], { reject: false });
    await new Promise<void>((resolve) => {
      let seen = '';
      wrapper.stderr!.on('data', (chunk: Buffer) => {
        seen += String(chunk);
        if (/none: 1000000 steps/.test(seen)) resolve();
      });
    });
    const children = async (pid: number) => (await execa('pgrep', ['-P', String(pid)], { reject: false })).stdout.split('\n').filter(Boolean).map(Number);
    const [cli] = await children(wrapper.pid!);
    const workers = await children(cli!);
    expect(workers.length, 'the CLI has its worker').to.be.greaterThan(0);
    wrapper.kill('SIGKILL'); // not awaited: the wrapper's output pipes stay open while its child lives
    const gone = (pid: number) => { try { process.kill(pid, 0); return false; } catch { return true; } };
    expect(await waitUntil(() => [cli!, ...workers].every(gone), 120_000)).to.equal(true, 'the CLI or its worker outlived the wrapper');
  });

  it('relative(x) sets alpha from the stability limit the worker estimates; an absolute alpha skips it unless asked; above the limit, a warning line', async () => {
    const file = join(tempDir(), 'relative.json');
    const schedule = [
      stage({ name: 'fm', regularizer: featureMap({ alpha: relative(0.3) }), iterations: 3, evalEvery: 3, optimizer: sgd({ lr: 0.05 }) }),
      stage({ name: 'act', regularizer: afaChannel({ alpha: 1 }), stabilityEstimate: true, iterations: 3, evalEvery: 3, optimizer: sgd({ lr: 0.05 }) }),
      stage({ name: 'plain', regularizer: featureMap({ alpha: 1e-3 }), iterations: 3, evalEvery: 3, optimizer: sgd({ lr: 0.05 }) }),
    ];
    writeFileSync(file, JSON.stringify(experiment({ ...tinyFineTune(), name: 'relative', schedule })));
    const result = await afa(['run', file, '--json', '--threads', '1']);
    expect(result.exitCode, result.stderr).to.equal(0);
    const stages = (JSON.parse(result.stdout) as ExperimentResult).stages;
    const [fm, act] = stages.map((s) => s.stability!);
    expect(stages[2]!.stability, 'an absolute alpha: no estimate unless asked').to.equal(undefined);
    expect(stages[2]!.phases.map((p) => p.phase)).to.deep.equal(['bn_recalibration', 'feature_cache']);
    expect(stages[0]!.phases.map((p) => p.phase)).to.include('stability_estimate');
    expect(fm.alphaRatio).to.be.closeTo(0.3, 1e-9);
    expect(fm.alpha).to.be.closeTo(0.3 * fm.alphaMax, 1e-12);
    expect(fm.alphaMax).to.be.closeTo(3.8 / (0.05 * fm.lambdaMax), 1e-9);
    expect(act.alpha).to.equal(1);
    expect(result.stderr).to.match(/^fm: alpha \S+ = 0\.30x the stability limit \S+ \(lambda_max \S+, \d+\.\ds\)$/m);
    expect(result.stderr).to.match(/^warning: act: alpha 1\.0 = \d+x the stability limit .*above 1x, expect alpha x Omega to blow up$/m);
    // the phases before each first step, as lines a person reads (stderr is not a terminal here)
    expect(result.stderr).to.match(/^fm: the stability estimate: \d+\/\d+ products in \d+\.\ds, [\d.]+ products\/s \(lambda_max \S+, converged; budget [\d.]+ s\)$/m);
    expect(result.stderr).to.match(/^plain: caching the source's maps: 50\/50 images in /m);
    expect(result.stderr).not.to.match(/^plain: the stability estimate/m);
  });

  it('afa info lists what the worker offers', async () => {
    const result = await afa(['info']);
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/backbones\s+small_resnet, resnet18/);
    expect(result.stdout).to.match(/torch\s+\d+\.\d+/);
  });

  it('afa cache lists entries by kind and size; prune removes by age, then the oldest past --max-size, never through a link', async () => {
    const cache = tempDir('afa-cache-cli-');
    const outside = join(tempDir('afa-cache-outside-'), 'precious');
    writeFileSync(outside, 'x'.repeat(5000));
    const day = 86_400_000;
    const put = (kind: string, name: string, bytes: number, ageDays: number) => {
      mkdirSync(join(cache, kind), { recursive: true });
      const path = join(cache, kind, name);
      writeFileSync(path, Buffer.alloc(bytes));
      const t = (Date.now() - ageDays * day) / 1000;
      utimesSync(path, t, t);
      return path;
    };
    const old = put('datasets', 'a'.repeat(64) + '.tar', 4096, 40);
    const middle = put('weights', 'b'.repeat(64), 3072, 5);
    const recent = put('decoded', 'c'.repeat(32), 2048, 1);
    symlinkSync(outside, join(cache, 'datasets', 'link-out'));
    const env = { AFA_CACHE: cache };
    const list = await afa(['cache'], { env });
    expect(list.exitCode, list.stderr).to.equal(0);
    expect(list.stdout).to.match(/^datasets +2 +4\.0 KiB/m); // the link counts as its own few bytes, not its target's 5000
    expect(list.stdout).to.match(/^weights +1 +3\.0 KiB/m);
    expect(list.stdout).to.match(/^decoded +1 +2\.0 KiB/m);
    expect(list.stdout).to.match(/^runs +0 +0\.0 KiB +- +-/m);
    const dry = await afa(['cache', 'prune', '--older-than', '30d', '--dry-run'], { env });
    expect(dry.stdout).to.include(`would remove datasets ${old}`);
    expect(existsSync(old)).to.equal(true);
    const byAge = await afa(['cache', 'prune', '--older-than', '30d', '--kind', 'datasets'], { env });
    expect(byAge.exitCode, byAge.stderr).to.equal(0);
    expect([existsSync(old), existsSync(middle), existsSync(recent)]).to.deep.equal([false, true, true]);
    const bySize = await afa(['cache', 'prune', '--max-size', '3K'], { env });
    expect(bySize.exitCode, bySize.stderr).to.equal(0);
    expect([existsSync(middle), existsSync(recent)]).to.deep.equal([false, true]); // the older goes first, until 3 KiB fit
    expect(readFileSync(outside, 'utf8')).to.have.length(5000);
    const bad = await afa(['cache', 'prune', '--kind', 'pictures', '--older-than', '1d'], { env });
    expect(bad.exitCode).to.equal(2);
    expect(bad.stderr.trim()).to.match(/--kind.*pictures.*runs, sources, weights, datasets, decoded, all/);
  });
});
