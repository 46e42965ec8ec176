import type { Command } from 'commander';
import { setupWorkerEnvironment } from '../worker/setup.js';

export function registerWorker(program: Command): void {
  const worker = program.command('worker').description('manage the bundled Python worker');
  worker
    .command('setup')
    .description('create the worker\'s Python environment (a venv under ~/.cache/afa-transfer, or $AFA_HOME)')
    .option('--python <path>', 'interpreter that creates the venv', 'python3')
    .action(async (opts: { python: string }) => {
      const python = await setupWorkerEnvironment({ basePython: opts.python, onOutput: (l) => console.error(l) });
      console.log(`worker environment ready: ${python}`);
    });
}
