#!/usr/bin/env node
/** The `afa` command line. */
import { Command } from 'commander';
import { registerInfo } from './info.js';
import { registerWorker } from './worker.js';
import { registerRun } from './run.js';
import { registerSweep } from './sweep.js';
import { registerResults } from './results.js';
import { registerModel } from './model.js';
import { registerCache } from './cache.js';
import { EXIT } from './exit.js';
import { packageVersion } from '../paths.js';
import { exitWithWrapper } from './orphan.js';

exitWithWrapper();
const program = new Command();
program.name('afa').description('Transfer learning by Attentive Feature Alignment, driven from TypeScript').version(packageVersion());
registerRun(program);
registerSweep(program);
registerResults(program);
registerModel(program);
registerCache(program);
registerInfo(program);
registerWorker(program);

program.parseAsync(process.argv).catch((error: unknown) => {
  console.error(`afa: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = EXIT.FAILURE;
});
