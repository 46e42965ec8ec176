// Faults, load and security against real worker processes.
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnauthenticatedError, SpecError, Worker, WorkerCallError, WorkerCrashedError } from '../ts-sdk/src/index.js';
import { type TrialRecord } from '../ts-sdk/src/sweep/index.js';
import { WorkerClient } from '../ts-sdk/src/proto.js';
import { AFA_CLI, processAlive, serveByHand, startTestWorker, tempDir, waitUntil } from './helpers.js';
import { tinyFineTune } from './fixtures/specs.js';

const [node, cliArgs] = AFA_CLI;
const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

function resultLines(dir: string): TrialRecord[] {
  return readFileSync(join(dir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrialRecord);
}

/** Worker processes started by `parent` (the sweep CLI's local workers). */
async function childWorkers(parent: number): Promise<number[]> {
  const r = await execa('pgrep', ['-P', String(parent), '-f', 'afa_worker'], { reject: false });
  return r.stdout.split('\n').filter(Boolean).map(Number);
}

describe('faults', function () {
  this.timeout(300_000);

  it('a worker that dies of a native abort mid-stage: WorkerCrashedError names the session, backbone, input and layout, with the Python stack', async () => {
    const worker = await startTestWorker();
    const run = worker.run(tinyFineTune(1_000_000), { checkpoint: false });
    let sessionId = '';
    try {
      for await (const event of run.events) {
        if (event.type === 'session' && event.phase === 'transfer') sessionId = event.sessionId;
        // SIGABRT: what glibc sends itself on heap corruption (the oneDNN fault ended so).
        if (event.type === 'step' && event.phase === 'transfer') process.kill(worker.pid!, 'SIGABRT');
      }
      expect.fail('the run must fail');
    } catch (error) {
      expect(error).to.be.instanceOf(WorkerCrashedError);
      const crash = error as WorkerCrashedError;
      expect(crash.signal).to.equal('SIGABRT');
      expect(crash.running).to.deep.equal({ sessionId, backbone: 'small_resnet width 8 depth 1', inputShape: [1, 28, 28],
        memoryFormat: 'contiguous', doing: 'running stage "none"' });
      expect(crash.message.split('\n')[0]).to.equal(`RunStage: the worker process died (killed by SIGABRT) while session ${sessionId.slice(0, 8)} ` +
        '(small_resnet width 8 depth 1, input 1x28x28, contiguous) was running stage "none"');
      expect(crash.stderrTail).to.match(/stage 'none' started \(1000000 steps, none\)/);
      expect(crash.stderrTail).to.include(`session ${sessionId.slice(0, 8)}: small_resnet width 8 depth 1, input 1x28x28, contiguous`);
      expect(crash.stderrTail).to.match(/Fatal Python error: Aborted\s+Stack \(most recent call first\):\s+File "/); // faulthandler's stack
    }
    await run.result.catch(() => undefined);
    expect(worker.state).to.equal('FAILED');
    await worker.stop();
  });

  it('a worker SIGKILLed mid-sweep: the trial is retried on a fresh worker and nothing is lost', async () => {
    const out = tempDir();
    const env = { AFA_TEST_SWEEP_LRS: '0.01,0.05', AFA_TEST_SWEEP_SEEDS: '0', AFA_TEST_SWEEP_STEPS: '400' };
    const cli = execa(node, [...cliArgs, 'sweep', 'test/fixtures/tiny-sweep.ts', '--workers', '1', '--threads', '1', '--out', out],
      { reject: false, env, buffer: true });
    let killed = 0;
    let seen = '';
    cli.stderr!.on('data', (chunk: Buffer) => {
      seen += String(chunk);
      // The second trial is under way (the first has finished): kill its worker, whatever it is doing.
      if (!killed && /started\s+\[lr=0\.05\] seed 0/.test(seen)) {
        killed = -1;
        void childWorkers(cli.pid!).then(([pid]) => {
          killed = pid ?? 0;
          if (pid) process.kill(pid, 'SIGKILL');
        });
      }
    });
    const result = await cli;
    expect(killed, result.stderr).to.be.greaterThan(0);
    expect(result.exitCode, result.stderr).to.equal(0);
    expect(result.stderr).to.match(/retry: .*\[lr=0\.05\] seed 0 on local-1 after: (CreateSession|OpenSession|RunStage): the worker process died/);
    const records = resultLines(out);
    expect(records.map((r) => [r.labels['schedule[0].optimizer.lr'], r.status, r.attempts])).to.deep.equal([
      ['0.01', 'completed', 1],
      ['0.05', 'completed', 2],
    ]);
    // The retried attempt is on record: where it ran and why it failed.
    expect(records[1]!.retries).to.have.length(1);
    expect(records[1]!.retries![0]).to.include({ attempt: 1, worker: 'local-1' });
    expect(records[1]!.retries![0]!.error).to.match(/^(CreateSession|OpenSession|RunStage): the worker process died \(killed by SIGKILL\)/);
  });

  it('SIGINT on afa sweep cancels the running trial, exits 130 and keeps finished trials for --resume', async () => {
    const out = tempDir();
    const env = { AFA_TEST_SWEEP_LRS: '0.01,0.05', AFA_TEST_SWEEP_SEEDS: '0', AFA_TEST_SWEEP_STEPS: '400' };
    const args = ['sweep', 'test/fixtures/tiny-sweep.ts', '--workers', '1', '--threads', '1', '--out', out];
    const cli = execa(node, [...cliArgs, ...args], { reject: false, env });
    let seen = '';
    let interrupted = false;
    cli.stderr!.on('data', (chunk: Buffer) => {
      seen += String(chunk);
      if (!interrupted && /started\s+\[lr=0\.05\]/.test(seen)) {
        interrupted = true;
        cli.kill('SIGINT');
      }
    });
    const result = await cli;
    expect(result.exitCode, result.stderr).to.equal(130);
    expect(result.stderr).to.include('rerun with --resume');
    // 400 steps take far longer than a cancel: a trial that ran on would have been recorded.
    expect(resultLines(out).map((r) => r.status)).to.deep.equal(['completed']);
    const resumed = await execa(node, [...cliArgs, ...args, '--resume'], { reject: false, env });
    expect(resumed.exitCode, resumed.stderr).to.equal(0);
    expect(resultLines(out)).to.have.length(2);
  });
});

describe('load', function () {
  this.timeout(300_000);

  it('two clients stream from one worker at once on different sessions, with the numbers of running alone', async () => {
    const owner = await startTestWorker({ threads: 2 });
    const a = await Worker.connect(owner.address, { token: owner.token });
    const b = await Worker.connect(owner.address, { token: owner.token });
    try {
      const specA = tinyFineTune(30);
      const specB = { ...tinyFineTune(30), seed: 1 };
      const alone = [await a.run(specA, { checkpoint: false }).result, await b.run(specB, { checkpoint: false }).result];
      const together = await Promise.all([a.run(specA, { checkpoint: false }).result, b.run(specB, { checkpoint: false }).result]);
      for (const [x, y] of together.map((r, i) => [r, alone[i]!] as const)) {
        expect(x.stages[0]!.history.evals.map((e) => e.accuracy)).to.deep.equal(y.stages[0]!.history.evals.map((e) => e.accuracy));
        expect(x.testAccuracy).to.equal(y.testAccuracy);
      }
    } finally {
      await a.stop();
      await b.stop();
      await owner.stop();
    }
  });

  it('50 sessions created and closed in a row keep the worker\'s RSS within 64 MiB of where it settled', async () => {
    const worker = await startTestWorker();
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${worker.pid}/status`, 'utf8'))![1]) * 1024;
    const cycle = async () => {
      const s = await worker.createSession({ backbone: { name: 'small_resnet', width: 8 }, data: tinyFineTune().target });
      await s.close();
    };
    try {
      for (let i = 0; i < 5; i++) await cycle(); // warm-up: imports, allocator pools, the MNIST parse
      const settled = rss();
      const samples: number[] = [];
      for (let i = 0; i < 50; i++) {
        await cycle();
        if (i % 10 === 9) samples.push(rss());
      }
      const growth = Math.max(...samples) - settled;
      console.log(`      RSS after warm-up ${(settled / 2 ** 20).toFixed(0)} MiB; after 10..50 more sessions ${samples.map((s) => (s / 2 ** 20).toFixed(0)).join(', ')} MiB`);
      expect(growth).to.be.below(64 * 2 ** 20);
      expect((await worker.info()).activeSessions).to.equal(0);
    } finally {
      await worker.stop();
    }
  });
});

describe('security', function () {
  this.timeout(120_000);

  it('a worker started by the SDK requires its token: another client without it gets UNAUTHENTICATED, health included', async () => {
    const worker = await startTestWorker();
    try {
      expect(worker.token).to.have.length.above(40);
      const bare = new WorkerClient(worker.address, { token: '' });
      const outcomes = await Promise.all([bare.getInfo(), bare.checkHealth()].map((p) => p.then(() => 'answered', (e: unknown) => e)));
      for (const outcome of outcomes) expect(outcome).to.be.instanceOf(UnauthenticatedError);
      bare.close();
      // the token is in the child's environment, not on its command line (which every user can read)
      const cmdline = readFileSync(`/proc/${worker.pid}/cmdline`, 'utf8');
      expect(cmdline).to.not.include(worker.token!);
      const second = await Worker.connect(worker.address, { token: worker.token });
      expect((await second.info()).pid).to.equal(worker.pid);
      await second.stop();
    } finally {
      await worker.stop();
    }
  });

  it('a worker started with a token answers UNAUTHENTICATED without it or with a wrong one', async () => {
    const { process: child, port, stop } = await serveByHand(['--token', 's3cret']);
    const address = `127.0.0.1:${port}`;
    try {
      for (const token of [undefined, 'wrong']) {
        try {
          await Worker.connect(address, { token, timeoutMs: 1000 });
          expect.fail('connect must fail');
        } catch (error) {
          expect(error).to.be.instanceOf(UnauthenticatedError);
          expect((error as Error).message).to.include('missing or wrong token');
        }
      }
      const right = await Worker.connect(address, { token: 's3cret' });
      expect((await right.info()).pid).to.equal(child.pid);
      await right.stop();
      process.env.AFA_TOKEN = 's3cret';
      const fromEnv = await Worker.connect(address);
      expect((await fromEnv.info()).pid).to.equal(child.pid);
      await fromEnv.stop();
    } finally {
      delete process.env.AFA_TOKEN;
      await stop();
    }
  });

  it('a worker confined to its checkpoint directory writes relative paths there and refuses others', async () => {
    const dir = tempDir('afa-ckpt-');
    const worker = await startTestWorker({ checkpointDir: dir, allowWrite: [] });
    try {
      await using session = await worker.createSession({ backbone: { name: 'small_resnet', width: 4 }, data: tinyFineTune().target });
      const saved = await session.saveCheckpoint('runs/model');
      expect(saved.path).to.equal(join(dir, 'runs', 'model.safetensors'));
      const outside = join(tempDir(), 'model.safetensors');
      const refused = await session.saveCheckpoint(outside).then(() => undefined, (e: unknown) => e);
      expect(refused).to.be.instanceOf(SpecError);
      expect((refused as SpecError).field).to.equal('path');
      expect((refused as SpecError).problem).to.match(/is outside the worker's checkpoint directory/);
      expect(existsSync(outside)).to.equal(false);
    } finally {
      await worker.stop();
    }
  });

  it('serves TLS with a token when given a certificate; the SDK connects with the CA', async () => {
    const dir = tempDir();
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert]);
    const { process: child, port, stop } = await serveByHand(['--token', 'tls-token', '--tls-cert', cert, '--tls-key', key]);
    try {
      const worker = await Worker.connect(`localhost:${port}`, { token: 'tls-token', tls: { rootCerts: readFileSync(cert) } });
      expect((await worker.info()).pid).to.equal(child.pid);
      await worker.stop();
      // the same port without TLS gets nowhere: a typed call error, never a connection
      const plaintext = await Worker.connect(`localhost:${port}`, { token: 'tls-token', timeoutMs: 1000 })
        .then((w) => w.stop().then(() => 'connected'), (error: unknown) => error);
      expect(plaintext).to.be.instanceOf(WorkerCallError);
    } finally {
      await stop();
    }
  });

  it('binds loopback by default, and refuses another address without a token', async () => {
    const { host, port, stop } = await serveByHand([]);
    expect(host).to.equal('127.0.0.1');
    const listening = await execa('ss', ['-ltnp'], { reject: false });
    if (listening.exitCode === 0) {
      const lines = listening.stdout.split('\n').filter((l) => l.includes(`:${port} `));
      expect(lines.length, listening.stdout).to.be.greaterThan(0);
      // 127.0.0.1, possibly as an IPv4-mapped IPv6 socket; never a wildcard address.
      for (const line of lines) expect(line).to.match(new RegExp(`(\\b127\\.0\\.0\\.1|\\[::ffff:127\\.0\\.0\\.1\\]):${port} `));
    }
    await stop();
    const open = await execa(PYTHON, ['-m', 'afa_worker', 'serve', '--host', '0.0.0.0', '--port', '0'], { cwd: 'python-worker', reject: false, env: { AFA_TOKEN: '' } });
    expect(open.exitCode).to.equal(2);
    expect(open.stderr).to.include('binding 0.0.0.0 exposes the worker beyond this machine: pass a token (AFA_TOKEN or --token-file');
  });

  it('SIGTERM: the worker reports NOT_SERVING, cancels running stages, drains and exits 0', async () => {
    const worker = await startTestWorker();
    const run = worker.run(tinyFineTune(1_000_000), { checkpoint: false });
    for await (const event of run.events) if (event.type === 'step' && event.phase === 'transfer') break;
    const pid = worker.pid!;
    await worker.stop();
    expect(await waitUntil(() => !processAlive(pid), 5000)).to.equal(true);
    // exit 0 of its own accord: not the SIGKILL that stop() sends when the drain times out
    expect(worker.exitStatus).to.deep.equal({ exitCode: 0, signal: null });
    expect(worker.stderrTail()).to.match(/shutting down: NOT_SERVING, cancelling stages, draining/);
    expect(worker.stderrTail()).to.match(/stage 'none' ended: STAGE_STATUS_CANCELLED/);
  });
});
