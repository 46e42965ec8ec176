import type { Command } from 'commander';
import { Worker } from '../worker/worker.js';
import type { WorkerInfo } from '../gen/afa/v1/afa.js';

function formatBytes(bytes: number): string {
  return bytes ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : '?';
}

function torchBuild(info: WorkerInfo): string {
  if (!info.cudaVersion) return 'CPU only';
  return `CUDA ${info.cudaVersion}${info.cudaAvailable ? '' : ', but no CUDA device is visible'}`;
}

export function formatInfo(info: WorkerInfo): string {
  const lines = [
    `worker      ${info.workerVersion} (protocol ${info.protocolVersion}, pid ${info.pid})`,
    `python      ${info.pythonVersion} (${info.pythonExecutable})`,
    `torch       ${info.torchVersion} (${torchBuild(info)})`,
    `cpu threads ${info.cpuThreads}`,
    ...info.devices.map((d) => `device      ${d.kind}:${d.index} ${d.name} ${formatBytes(d.memoryBytes)}`),
    `backbones   ${info.backbones.join(', ')}`,
    `datasets    ${info.datasets.join(', ')}`,
    `regularizers ${info.regularizers.join(', ')}`,
  ];
  return lines.join('\n');
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('start a worker (or attach to one) and print what it offers')
    .option('--worker <address>', 'attach to a running worker instead of starting one')
    .option('--python <path>', 'Python interpreter for a started worker')
    .option('--json', 'print the info as JSON')
    .action(async (opts: { worker?: string; python?: string; json?: boolean }) => {
      const worker = opts.worker ? await Worker.connect(opts.worker) : await Worker.start({ python: opts.python });
      try {
        const info = await worker.info();
        console.log(opts.json ? JSON.stringify(info, null, 2) : formatInfo(info));
      } finally {
        await worker.stop();
      }
    });
}
