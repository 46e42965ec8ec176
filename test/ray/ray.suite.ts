// Sweeps on a real two-node Ray cluster with real workers on real data. Ray probes external
// addresses and binds wildcard, so this suite runs only inside a private network namespace that
// has nothing but lo (scripts/run-ray-tests.sh; `make test` does); it refuses to run elsewhere.
import { expect } from 'chai';
import { execa, execaSync, type ResultPromise } from 'execa';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { createInterface, type Interface } from 'node:readline';
import { join } from 'node:path';
import { grid, sweep } from '../../ts-sdk/src/index.js';
import { planSlots, RayPool, runSweep, type SweepEvent, type TrialRecord } from '../../ts-sdk/src/sweep/index.js';
import { AFA_CLI, tempDir } from '../helpers.js';
import { tinyFineTune } from '../fixtures/specs.js';

const PYTHON = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');

interface ClusterNode { role: 'head' | 'node2'; node_id: string; raylet_pid: number; cache: string }

function assertPrivateNetwork(): void {
  // /proc/net is this process's network namespace (/sys/class/net may show the host's).
  const links = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter(Boolean);
  if (links.length !== 1 || links[0] !== 'lo') {
    throw new Error(`the Ray tests run only in a network namespace with nothing but lo (found ${links.join(', ')}): ` +
      'run scripts/run-ray-tests.sh');
  }
}

/** The test cluster (test/ray/cluster.py): its address, its nodes, and a query of live worker actors. */
class TestCluster {
  private constructor(private readonly child: ResultPromise, private readonly lines: AsyncIterator<string>,
    readonly address: string, readonly nodes: ClusterNode[]) {}

  static async start(): Promise<TestCluster> {
    const child = execa(PYTHON, ['test/ray/cluster.py', tempDir('afa-head-cache-'), tempDir('afa-node2-cache-')],
      { stdin: 'pipe', buffer: false, reject: false, stderr: 'pipe' });
    // Ray logs a lot to stderr; its tail says why a cluster that never came up did not.
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-6000)));
    const reader: Interface = createInterface({ input: child.stdout! });
    const lines = reader[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) {
      await child;
      throw new Error(`the test cluster exited before it was up; its stderr ends:\n${stderr.trim() || '(nothing)'}`);
    }
    const { address, nodes } = JSON.parse(first.value) as { address: string; nodes: ClusterNode[] };
    return new TestCluster(child, lines, address, nodes);
  }

  node(role: ClusterNode['role']): ClusterNode {
    return this.nodes.find((n) => n.role === role)!;
  }

  /** afa worker actors the cluster's control store does not list as dead. */
  async liveActors(): Promise<Array<{ state: string; pid: number }>> {
    this.child.stdin!.write('actors\n');
    for (;;) {
      const line = await this.lines.next(); // Ray's own log lines come through too
      if (line.done) throw new Error('the test cluster exited');
      if (line.value.startsWith('ACTORS ')) return JSON.parse(line.value.slice(7)) as Array<{ state: string; pid: number }>;
    }
  }

  async until(condition: (actors: Array<{ state: string; pid: number }>) => boolean, what: string, attempts = 120): Promise<void> {
    for (let i = 0; i < attempts; i++) {
      if (condition(await this.liveActors())) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`the cluster never showed ${what}: ${JSON.stringify(await this.liveActors())}`);
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await this.child;
  }
}

/** Whether the process runs (a killed child its parent has not reaped yet is a zombie: not running). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const shortId = (node: ClusterNode) => node.node_id.slice(0, 8);

function tinySweep(name: string, steps: number, lrs: number[], seeds: number[]) {
  return sweep({ name, base: tinyFineTune(steps), space: { 'schedule[0].optimizer.lr': grid(lrs) }, seeds });
}

/** The CLI's sweep of test/fixtures/tiny-sweep.ts on the cluster, read line by line. */
function cliSweep(address: string, out: string, steps: number) {
  const child = execa(AFA_CLI[0], [...AFA_CLI[1], 'sweep', 'test/fixtures/tiny-sweep.ts', '--ray', address, '--workers', '2', '--out', out],
    { reject: false, buffer: false, env: { AFA_TEST_SWEEP_STEPS: String(steps) } });
  // Progress lines go to stderr.
  const progress = createInterface({ input: child.stderr! });
  const started = new Promise<void>((resolve) => progress.on('line', (l) => l.startsWith('started') && resolve()));
  return { child, started };
}

describe('sweeps on a Ray cluster', function () {
  this.timeout(180_000);
  let cluster: TestCluster;

  before(async () => {
    assertPrivateNetwork();
    cluster = await TestCluster.start();
  });

  after(async () => {
    await cluster?.stop();
  });

  it('6 trials on 2 nodes: all complete, both nodes named, the numbers of local workers; the source pretrained once, every node trains from its bytes', async () => {
    const definition = tinySweep('ray-equal', 6, [0.01, 0.05], [0, 1, 2]);
    const events: SweepEvent[] = [];
    const sourceHashes = new Map<string, string>();
    const onTrialEvent = (trial: { trialId: string }, event: { type: string; phase?: string; sourceSha256?: string }) => {
      if (event.type === 'session' && event.phase === 'transfer') sourceHashes.set(trial.trialId, event.sourceSha256 ?? '');
    };
    const onRay = await runSweep(definition, { outDir: tempDir(), slots: planSlots({ ray: { address: cluster.address, workers: 2, threads: 1 } }),
      onEvent: (e) => events.push(e), onTrialEvent });
    expect(onRay.records.map((r) => r.status)).to.deep.equal(Array(6).fill('completed'));
    const nodesUsed = new Set(onRay.records.map((r) => cluster.nodes.find((n) => r.node?.includes(shortId(n)))?.role));
    expect([...nodesUsed].sort()).to.deep.equal(['head', 'node2']);

    const sources = events.filter((e): e is Extract<SweepEvent, { type: 'source' }> => e.type === 'source');
    expect(sources.map((s) => s.cached)).to.deep.equal([false]);
    const hash = sha256(sources[0]!.path);
    expect([...sourceHashes.values()]).to.deep.equal(Array(6).fill(hash));
    for (const node of cluster.nodes) expect(sha256(join(node.cache, 'weights', `${hash}.safetensors`)), node.role).to.equal(hash);

    const local = await runSweep(definition, { outDir: tempDir(), slots: planSlots({ local: 2, threads: 1 }) });
    const byId = (records: TrialRecord[]) => Object.fromEntries(records.map((r) => [r.trialId, { metrics: r.metrics, curve: r.curve }]));
    expect(byId(onRay.records)).to.deep.equal(byId(local.records));
  });

  for (const signal of ['SIGINT', 'SIGKILL'] as const) {
    it(`the SDK exiting by ${signal} mid-sweep leaves no worker actor alive`, async () => {
      await cluster.until((actors) => actors.length === 0, 'no afa worker actors before the sweep');
      const { child, started } = cliSweep(cluster.address, tempDir(), 100_000);
      await started;
      expect((await cluster.liveActors()).length).to.be.greaterThan(0); // the query sees them
      child.kill(signal);
      const exited = await child;
      if (signal === 'SIGINT') expect(exited.exitCode).to.equal(130);
      await cluster.until((actors) => actors.length === 0, 'no afa worker actors');
    });
  }

  it('an actor no node can place (more CPUs than any has): the slot gives up after actorStartTimeoutMs saying why; stopping leaves no actor', async () => {
    await cluster.until((actors) => actors.length === 0, 'no afa worker actors before');
    const pool = await RayPool.start({ address: cluster.address, workers: 1, cpusPerWorker: 64, actorStartTimeoutMs: 3_000 });
    try {
      let error: unknown;
      await pool.endpoint(0).catch((e: unknown) => (error = e));
      expect(String(error)).to.match(/Ray did not start worker 1 within 3000 ms \(the cluster may lack the CPUs\/GPUs it asks for\)/);
    } finally {
      await pool.stop();
    }
    await cluster.until((actors) => actors.length === 0, 'no afa worker actors after');
  });

  it('--ray with no cluster reachable: a clear error and exit 1, before any worker starts', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    const explicit = await execa(AFA_CLI[0], [...AFA_CLI[1], 'sweep', 'test/fixtures/tiny-sweep.ts', '--ray', `127.0.0.1:${port}`, '--out', tempDir()],
      { reject: false });
    expect(explicit.exitCode).to.equal(1);
    expect(explicit.stderr).to.match(new RegExp(`afa sweep: Ray: cannot reach the Ray cluster at 127\\.0\\.0\\.1:${port}: Connection refused`));
    const auto = await execa(AFA_CLI[0], [...AFA_CLI[1], 'sweep', 'test/fixtures/tiny-sweep.ts', '--ray', '--out', tempDir()],
      { reject: false, env: { RAY_ADDRESS: `127.0.0.1:${port}` } });
    expect(auto.exitCode).to.equal(1);
    expect(auto.stderr).to.include(`cannot reach the Ray cluster at 127.0.0.1:${port}`);
  });

  it('a node killed mid-trial (its raylet and workers, by pid): the sweep completes, nothing lost or duplicated, the trial retried with attempts 2', async () => {
    const node2 = cluster.node('node2');
    const slots = planSlots({ ray: { address: cluster.address, workers: 2, threads: 1 } });
    let interrupted: string | undefined;
    const retries: string[] = [];
    const outDir = tempDir();
    const outcome = await runSweep(tinySweep('ray-node-loss', 40, [0.01, 0.05], [0, 1]), {
      outDir, slots,
      onEvent: (e) => {
        if (e.type === 'trial-retry') retries.push(e.trial.trialId);
        if (e.type !== 'trial-eval' || interrupted) return;
        if (!slots.find((s) => s.name === e.worker)?.node?.includes(shortId(node2))) return;
        interrupted = e.trial.trialId;
        const workers = execaSync('pgrep', ['-P', String(node2.raylet_pid)], { reject: false }).stdout.split('\n').filter(Boolean).map(Number);
        for (const pid of [node2.raylet_pid, ...workers]) process.kill(pid, 'SIGKILL');
      },
    });
    expect(interrupted, 'a trial ran on node2').to.be.a('string');
    expect(running(node2.raylet_pid)).to.equal(false);
    expect(retries).to.deep.equal([interrupted]);
    const lines = readFileSync(join(outDir, 'results.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as TrialRecord);
    expect(lines).to.have.length(4);
    expect(new Set(lines.map((r) => r.trialId)).size).to.equal(4);
    expect(outcome.records.map((r) => r.status)).to.deep.equal(Array(4).fill('completed'));
    const retried = lines.find((r) => r.trialId === interrupted)!;
    expect(retried.attempts).to.equal(2);
    expect(retried.node).to.include(shortId(cluster.node('head')));
    expect(lines.filter((r) => r.trialId !== interrupted).map((r) => r.attempts)).to.deep.equal([1, 1, 1]);
    await cluster.until((actors) => actors.length === 0, 'no afa worker actors after the sweep');
  });
});
