import { expect } from 'chai';
import { execa } from 'execa';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IllegalStateError, Worker, WorkerCrashedError, WorkerStartError, REGULARIZER_KINDS } from '../ts-sdk/src/index.js';
import { PROTOCOL_VERSION } from '../ts-sdk/src/proto.js';
import { processAlive, startTestWorker, tempDir, waitUntil } from './helpers.js';

describe('worker lifecycle (real worker process)', () => {
  it('starts, reports GetInfo, stops gracefully and leaves no process behind', async () => {
    const worker = await startTestWorker();
    const pid = worker.pid!;
    expect(worker.state).to.equal('RUNNING');
    expect(processAlive(pid)).to.equal(true);

    const info = await worker.info();
    expect(info.protocolVersion).to.equal(1);
    expect(info.pid).to.equal(pid);
    expect(info.torchVersion).to.match(/^\d+\.\d+/);
    expect(info.cpuThreads).to.equal(1);
    expect(info.devices[0]!.kind).to.equal('cpu');
    expect(info.regularizers).to.have.length(REGULARIZER_KINDS.length); // the lists themselves: contract.test.ts

    await worker.stop();
    expect(worker.state).to.equal('STOPPED');
    expect(worker.history.map((h) => h.state)).to.deep.equal(['RUNNING', 'STOPPING', 'STOPPED']);
    expect(await waitUntil(() => !processAlive(pid), 5000)).to.equal(true);
    // A stopped worker refuses calls with a typed error instead of hanging.
    try {
      await worker.info();
      expect.fail('info() on a stopped worker must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(IllegalStateError);
    }
  });

  it('disposes with `await using`', async () => {
    let pid = 0;
    {
      await using worker = await startTestWorker();
      pid = worker.pid!;
      expect((await worker.info()).pid).to.equal(pid);
    }
    expect(await waitUntil(() => !processAlive(pid), 5000)).to.equal(true);
  });

  it('fails fast with a clear message when the interpreter does not exist', async () => {
    const started = Date.now();
    try {
      await Worker.start({ python: '/nonexistent/python3' });
      expect.fail('start must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(WorkerStartError);
      expect((error as Error).message).to.match(/\/nonexistent\/python3/);
    }
    expect(Date.now() - started).to.be.below(5000);
  });

  it('fails fast with the stderr tail when the worker cannot import', async () => {
    // A torch package that fails to import shadows the real one: a real ImportError at start-up.
    const dir = tempDir();
    mkdirSync(join(dir, 'torch'));
    writeFileSync(join(dir, 'torch', '__init__.py'), 'raise ImportError("simulated broken install of torch")\n');
    const started = Date.now();
    try {
      await startTestWorker({ env: { PYTHONPATH: dir } });
      expect.fail('start must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(WorkerStartError);
      const e = error as WorkerStartError;
      expect(e.stderrTail).to.include('simulated broken install');
      expect(e.message).to.include('the worker (' ).and.to.include('exited before it was ready');
    }
    expect(Date.now() - started).to.be.below(10000);
  });

  for (const [what, handshake, message] of [
    ['another version', { protocol: PROTOCOL_VERSION, version: '0.0.1' }, /the worker is afa-worker 0\.0\.1, this SDK is afa-transfer \S+; run `npx afa worker setup`/],
    ['another protocol', { protocol: PROTOCOL_VERSION + 1, version: '0.0.1' }, /the worker speaks protocol \d+, this SDK speaks \d+; run `npx afa worker setup`/],
  ] as const) {
    it(`refuses a worker whose handshake reports ${what}, naming the command that fixes it`, async () => {
      const dir = tempDir();
      const fake = join(dir, 'python');
      const line = JSON.stringify({ ready: { pid: 1, serve: { port: 1, host: '127.0.0.1' }, ...handshake } });
      writeFileSync(fake, `#!/bin/sh\necho 'AFA ${line}'\nexec sleep 30\n`);
      chmodSync(fake, 0o755);
      const error = await Worker.start({ python: fake }).then(() => undefined, (e: unknown) => e);
      expect(error).to.be.instanceOf(WorkerStartError);
      expect((error as Error).message).to.match(message);
    });
  }

  it('a worker Python without the worker\'s requirements gets the command that installs them', async () => {
    const dir = tempDir();
    const fake = join(dir, 'python');
    writeFileSync(fake, '#!/bin/sh\necho "ModuleNotFoundError: No module named \'grpc\'" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    const error = await Worker.start({ python: fake }).then(() => undefined, (e: unknown) => e);
    expect((error as Error).message).to.match(/lacks the module grpc: run `npx afa worker setup`/);
  });

  it('fails with a clear message when the worker never says it is ready', async () => {
    const dir = tempDir();
    const fake = join(dir, 'python');
    // exec: the sleep is the process the SDK kills (a shell's orphaned child would hold the pipes open for its 30 s)
    writeFileSync(fake, '#!/bin/sh\necho "starting up" >&2\nexec sleep 30\n');
    chmodSync(fake, 0o755);
    try {
      await Worker.start({ python: fake, startTimeoutMs: 1500 });
      expect.fail('start must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(WorkerStartError);
      expect((error as Error).message).to.match(/the worker \(\S+\) was not ready within 1500 ms/);
      expect((error as WorkerStartError).stderrTail).to.include('starting up');
    }
  });

  /** Starts the fixture parent, resolves with its worker's pid once `ready` appears on its stdout. */
  async function parentWithWorker(args: string[], ready: RegExp) {
    // node itself, not the tsx wrapper: SIGKILL must hit the process that owns the worker.
    const parent = execa(process.execPath, ['--import', 'tsx', 'test/fixtures/parent-with-worker.ts', ...args], { buffer: false, reject: false });
    const pid = await new Promise<number>((resolve, reject) => {
      parent.stdout!.setEncoding('utf8');
      let text = '';
      parent.stdout!.on('data', (chunk: string) => {
        text += chunk;
        const match = /WORKER_PID (\d+)/.exec(text);
        if (match && ready.test(text)) resolve(Number(match[1]));
      });
      parent.then(() => reject(new Error(`parent exited before its worker was ready: ${text}`)));
    });
    return { parent, pid };
  }

  it('the worker dies with its parent, even when the parent is SIGKILLed', async () => {
    const { parent, pid } = await parentWithWorker([], /WORKER_PID/);
    expect(processAlive(pid)).to.equal(true);
    parent.kill('SIGKILL');
    await parent;
    expect(await waitUntil(() => !processAlive(pid), 60_000)).to.equal(true, 'worker outlived its parent');
  });

  it('the worker dies with its parent SIGKILLed in the middle of a long DELTA probe', async () => {
    const { parent, pid } = await parentWithWorker(['delta-probe'], /PROBING/);
    parent.kill('SIGKILL');
    await parent;
    // stdin closes -> the worker cancels the probe at its next step and exits (a hard exit backs it up)
    expect(await waitUntil(() => !processAlive(pid), 60_000)).to.equal(true, 'worker outlived its parent');
  });

  it('a worker killed with SIGKILL surfaces as WorkerCrashedError with its stderr tail', async () => {
    const worker = await startTestWorker();
    process.kill(worker.pid!, 'SIGKILL');
    await worker.exited;
    expect(worker.state).to.equal('FAILED');
    try {
      await worker.info();
      expect.fail('info() on a dead worker must throw');
    } catch (error) {
      expect(error).to.be.instanceOf(WorkerCrashedError);
      expect((error as WorkerCrashedError).signal).to.equal('SIGKILL');
    }
    await worker.stop();
  });
});
