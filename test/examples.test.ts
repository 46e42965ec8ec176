// Every example runs (shrunk by AFA_EXAMPLES_QUICK=1); the paper ones up to their clear error.
import { expect } from 'chai';
import { execa } from 'execa';
import { AFA_CLI } from './helpers.js';

const [node, cliArgs] = AFA_CLI;
const env = { AFA_EXAMPLES_QUICK: '1' };

function script(file: string) {
  return execa(node, ['--import', 'tsx', file], { reject: false, env });
}

describe('examples', () => {
  it('quickstart.ts runs through `afa run`', async () => {
    const result = await execa(node, [...cliArgs, 'run', 'examples/quickstart.ts', '--json'], { reject: false, env });
    expect(result.exitCode, result.stderr).to.equal(0);
    expect((JSON.parse(result.stdout) as { stages: unknown[] }).stages).to.have.length(2);
  });

  it('custom-schedule.ts drives stages one by one and decides between them', async () => {
    const result = await script('examples/custom-schedule.ts');
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/head-warmup: best val/);
    expect(result.stdout).to.match(/spatial alignment (helped|did not help)/);
    expect(result.stdout).to.match(/test accuracy of the selected model: \d+\.\d%/);
  });

  it('pipeline.ts consumes events, cancels with an AbortSignal and uses the checkpoint', async () => {
    const result = await script('examples/pipeline.ts');
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/cancelled as asked/);
    expect(result.stdout).to.match(/checkpoint metadata: 10 classes, sha256 [0-9a-f]{12}/);
  });

  for (const [file, variable] of [
    ['examples/paper-resnet101-dogs.ts', 'AFA_DOGS_ROOT'],
    ['examples/paper-mobilenetv2-dogs.ts', 'AFA_DOGS_ROOT'],
  ] as const) {
    it(`${file} fails with a clear message without the data and ImageNet weights`, async () => {
      const result = await execa(node, [...cliArgs, 'run', file], { reject: false, env: { ...env, AFA_DOGS_ROOT: '' } });
      expect(result.exitCode).to.equal(2);
      expect(result.stderr).to.include(`${variable}: set ${variable} to a Stanford Dogs ImageFolder tree`);
    });
  }
});

describe('demo', () => {
  it('examples/demo.ts runs every method and prints the comparison table', async () => {
    const result = await execa(node, ['--import', 'tsx', 'examples/demo.ts'], { reject: false, env });
    expect(result.exitCode, result.stderr).to.equal(0);
    for (const method of ['fine-tune', 'L2-SP', 'DELTA', 'AFA']) expect(result.stdout).to.match(new RegExp(`^${method}\\s+\\d+\\.\\d%\\s+\\d+\\.\\d%`, 'm'));
    expect(result.stdout).to.match(/method\s+val acc\s+test acc\s+time/);
    // The regime map's headline, so one seed's table is not read as a ranking.
    expect(result.stdout).to.include('no alignment method beats fine-tuning once each method picks its own lr');
  });
});

describe('sweep example', () => {
  it('examples/sweep-alpha.ts runs on 2 workers and ends with the table and a best configuration', async () => {
    const out = (await import('./helpers.js')).tempDir();
    const result = await execa(node, [...cliArgs, 'sweep', 'examples/sweep-alpha.ts', '--workers', '2', '--out', out], { reject: false, env });
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stdout).to.match(/schedule\s+s0\.regularizer\.alpha\s+bestValAccuracy %\s+test %\s+n/);
    for (const method of ['feature-map', 'DELTA', 'AFA']) expect(result.stdout).to.match(new RegExp(`^${method}\\s+0\\.001\\s+\\d+\\.\\d ± \\d+\\.\\d`, 'm'));
    expect(result.stdout).to.include('best configuration (runnable: afa run');
  });
});
