// Source weights over the contract: a worker that does not share the SDK's disk pretrains into its
// own store and the SDK downloads the source; another worker with an empty store gets it uploaded by
// hash; both train from the same bytes. A spawned local worker still reads the file by path.
import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pretrain, data, Worker, type ExperimentResult } from '../ts-sdk/src/index.js';
import { serveByHand, startTestWorker, tempDir } from './helpers.js';
import { tinyFineTune } from './fixtures/specs.js';


/** A worker as one started on another machine: its own store and cache, a token, no path of ours to read. */
async function remoteWorker(root: string) {
  const { process: child, port } = await serveByHand(['--checkpoint-dir', join(root, 'checkpoints')],
    { AFA_TOKEN: 'remote-token', AFA_CACHE: join(root, 'cache') });
  const worker = await Worker.connect(`127.0.0.1:${port}`, { token: 'remote-token' });
  return { worker, child, store: join(root, 'cache', 'weights') };
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('weights over the contract', function () {
  this.timeout(300_000);
  // A source no other test pretrains, in a cache of this test's own.
  const spec = { ...tinyFineTune(3), source: pretrain({ data: data.fashionMnist({ testPerClass: 10 }), iterations: 12, batchSize: 32, seed: 7 }) };

  it('a remote worker pretrains into its store, the SDK downloads it; an empty worker gets it uploaded; same bytes everywhere', async () => {
    const cacheDir = tempDir();
    const a = await remoteWorker(tempDir());
    const b = await remoteWorker(tempDir());
    try {
      const events: string[] = [];
      const run = a.worker.run(spec, { cacheDir, checkpoint: false, resultDir: false });
      for await (const event of run.events) if (event.type === 'source') events.push(`${event.cached}`);
      const first: ExperimentResult = await run.result;
      expect(events).to.deep.equal(['false']);
      const cached = first.sourcePath!;
      expect(cached.startsWith(cacheDir)).to.equal(true);
      expect(existsSync(cached.replace(/\.safetensors$/, '.json'))).to.equal(true);
      const hash = sha256(cached);
      expect(first.sourceSha256).to.equal(hash);
      expect(readdirSync(a.store).filter((f) => !f.startsWith('.'))).to.deep.equal([`${hash}.safetensors`]);

      expect(existsSync(b.store)).to.equal(false);
      const second = await b.worker.run(spec, { cacheDir, checkpoint: false, resultDir: false }).result;
      expect(second.timings.sourceCached).to.equal(true);
      expect(second.sourceSha256).to.equal(hash);
      expect(sha256(join(b.store, `${hash}.safetensors`))).to.equal(hash);
      // The same bytes, seed and spec: the same training on either worker.
      expect(second.stages[0]!.finalValAccuracy).to.equal(first.stages[0]!.finalValAccuracy);
      expect(second.stages[0]!.finalValLoss).to.equal(first.stages[0]!.finalValLoss);
    } finally {
      await Promise.all([a.worker.stop(), b.worker.stop()]);
      a.child.kill();
      b.child.kill();
    }
  });

  it('a spawned local worker reads the source by path: nothing is uploaded', async () => {
    const cache = tempDir();
    const worker = await startTestWorker({ env: { AFA_CACHE: cache } });
    try {
      const result = await worker.run(spec, { cacheDir: tempDir(), checkpoint: false, resultDir: false }).result;
      expect(result.sourceSha256).to.equal(sha256(result.sourcePath!));
      expect(existsSync(join(cache, 'weights'))).to.equal(false);
    } finally {
      await worker.stop();
    }
  });
});
