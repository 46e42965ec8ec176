// Root hooks: every test run gets its own cache of pretrained sources, shared by the suites of that
// run (the first suite pretrains, the rest reuse), and never the user's own cache.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cache = mkdtempSync(join(tmpdir(), 'afa-test-cache-'));
process.env.AFA_CACHE = cache;

export const mochaHooks = {
  afterAll(): void {
    rmSync(cache, { recursive: true, force: true });
  },
};
