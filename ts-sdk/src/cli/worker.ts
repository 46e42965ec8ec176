import type { Command } from 'commander';
import { setupWorkerEnvironment } from '../worker/setup.js';
import { TORCH_BUILDS, type TorchBuild } from '../worker/environment.js';

interface SetupFlags {
  python: string;
  torch?: TorchBuild;
  torchIndex?: string;
  force?: boolean;
  ray?: boolean;
}

export function registerWorker(program: Command): void {
  const worker = program.command('worker').description('manage the bundled Python worker');
  worker
    .command('setup')
    .description('create or update the worker\'s Python environment (a venv under ~/.cache/afa-transfer, or $AFA_HOME); ' +
      'does nothing when this version already set it up')
    .option('--python <path>', 'interpreter that creates the venv (when there is none yet)', 'python3')
    .option('--torch <build>', `which torch: ${TORCH_BUILDS.join(' or ')} (cpu: PyTorch's CPU-only wheels; default: what pip picks)`)
    .option('--torch-index <url>', 'package index to take torch from (a mirror, or a CUDA-version index)')
    .option('--force', 'reinstall even when the venv is up to date')
    .option('--ray', 'install Ray too, for afa sweep --ray (it then stays installed)')
    .action(async (opts: SetupFlags) => {
      const result = await setupWorkerEnvironment({
        basePython: opts.python, torch: opts.torch, torchIndexUrl: opts.torchIndex, force: opts.force, ray: opts.ray,
        onOutput: (l) => console.error(l),
      });
      const torch = `torch ${result.torch} (${result.cuda ? `CUDA ${result.cuda}` : 'CPU only'})`;
      console.log(`worker environment ${result.installed ? 'ready' : 'already up to date'}: ${result.python}`);
      console.log(`afa-worker ${result.afaWorker}, ${torch}`);
    });
}
