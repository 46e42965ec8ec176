// The paper's configurations themselves, at reduced scale: examples/paper-resnet101-dogs.ts and
// paper-mobilenetv2-dogs.ts through `afa run` on a generated ImageFolder (RGB PNGs of mixed sizes,
// the paper's resize + random crop + flip at 72 -> 64 px) with ImageNet-shaped weights (random,
// written in torchvision's layout), all four paper layers aligned, 2 steps a stage. What is not
// reduced: the backbone, its 1,000-class source head replaced, the layers, the alphas, AFA's two
// stages and the promote step between them, and every phase before the first step reported.
import { expect } from 'chai';
import { execa } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePng } from '../ts-sdk/src/png.js';
import { AFA_CLI, tempDir } from './helpers.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');
const [node, cliArgs] = AFA_CLI;

/** Three classes of textured RGB images, 4 train (one becomes val) and 2 test each, of mixed sizes. */
function dogsFolder(root: string): void {
  for (const [split, n] of [['train', 4], ['test', 2]] as const) {
    for (const [c, name] of ['beagle', 'collie', 'pug'].entries()) {
      mkdirSync(join(root, split, name), { recursive: true });
      for (let i = 0; i < n; i++) {
        const w = 80 + 8 * i;
        const h = 96 - 4 * i;
        const pixels = new Uint8Array(w * h * 3).map((_, k) => ((k % 3 === c ? 180 : 40) + ((k * 31 + i * 17) % 60)) & 255);
        writeFileSync(join(root, split, name, `${String(i).padStart(3, '0')}.png`), encodePng(w, h, pixels, 3));
      }
    }
  }
}

/** The worker's own backbone with random weights, saved as torchvision's ImageNet state dict would be. */
async function imagenetShaped(name: string, file: string): Promise<void> {
  await execa(PYTHON, ['-c', [
    'import sys, torch',
    'from safetensors.torch import save_file',
    'from afa_worker.backbones import build_backbone',
    'torch.manual_seed(0)',
    'model = build_backbone(sys.argv[1], 1000, 3)',
    'save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[2])',
  ].join('\n'), name, file], { env: { PYTHONPATH: join(process.cwd(), 'python-worker') } });
}

interface Run {
  stages: { name: string; status: string; stepsCompleted: number; phases: { phase: string; seconds: number; detail: string }[];
    attention: { layer: string }[] }[];
  testAccuracy: number;
}

const CASES = [
  { file: 'examples/paper-resnet101-dogs.ts', backbone: 'resnet101', variable: 'AFA_RESNET101_WEIGHTS',
    layers: ['layer1.2.conv3', 'layer2.3.conv3', 'layer3.22.conv3', 'layer4.2.conv3'] },
  { file: 'examples/paper-mobilenetv2-dogs.ts', backbone: 'mobilenet_v2', variable: 'AFA_MOBILENETV2_WEIGHTS',
    layers: ['features.5.conv.2', 'features.9.conv.2', 'features.13.conv.2', 'features.17.conv.2'] },
] as const;

describe('the paper examples at reduced scale (real worker, generated ImageFolder, ImageNet-shaped weights)', function () {
  const root = tempDir('afa-dogs-');
  before(() => dogsFolder(root));

  for (const c of CASES) {
    it(`${c.file}: both AFA stages on all four paper layers, every phase before the first step reported`, async () => {
      const weights = join(tempDir('afa-imagenet-'), `${c.backbone}.safetensors`);
      await imagenetShaped(c.backbone, weights);
      const result = await execa(node, [...cliArgs, 'run', c.file, '--json'], { reject: false,
        env: { AFA_EXAMPLES_QUICK: '1', AFA_DOGS_ROOT: root, [c.variable]: weights } });
      expect(result.exitCode, result.stderr).to.equal(0);
      const run = JSON.parse(result.stdout) as Run;
      expect(run.stages.map((s) => [s.name, s.status, s.stepsCompleted])).to.deep.equal([
        ['afa-spatial', 'completed', 2], ['afa-channel', 'completed', 2]]);
      for (const stage of run.stages) {
        expect(stage.attention.map((a) => a.layer), stage.name).to.deep.equal([...c.layers]);
        const phases = stage.phases.map((p) => p.phase);
        // absolute alphas (the paper's): no stability estimate; random crops: no feature cache
        expect(phases, stage.name).to.deep.equal(['bn_recalibration']);
        expect(stage.phases[0]!.seconds).to.be.greaterThan(0);
      }
      expect(run.testAccuracy).to.be.within(0, 1);
      // what a person sees on stderr: the phases as lines (not a terminal), the layers, the stages
      expect(result.stderr).to.match(/^loading the source: ([\d.]+)\/\1 MiB in \d+\.\ds, [\d.]+ MiB\/s \(\w+\.safetensors\)$/m);
      expect(result.stderr).to.match(/afa-spatial: recalibrating the source's batch norms: 9\/9 images in/);
      expect(result.stderr).to.match(/afa-channel: 2 steps/);
    });
  }
});
