// Bad input: each answered before any training with the right status and a message naming the
// field, and after each the same worker still serves GetInfo. The table is docs/reliability.md's.
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  AfaWorkerClient,
  type ColorMode,
  Split,
  type CreateSessionRequest,
  type StageSpec as StageMessage,
} from '../ts-sdk/src/gen/afa/v1/afa.js';
import { afaSpatial, data, NotFoundError, noRegularizer, ResourceExhaustedError, SessionBusyError, SpecError, stage, type AfaError, type DataSpec, type RegularizerSpec, type Worker } from '../ts-sdk/src/index.js';
import { toCreateSessionRequest, toStageMessage } from '../ts-sdk/src/run/convert.js';
import { fromGrpcError } from '../ts-sdk/src/client/errors.js';
import { startTestWorker, tempDir } from './helpers.js';
import { tinyBackbone } from './fixtures/specs.js';

type ErrorClass = abstract new (...args: never[]) => AfaError;

interface BadInput {
  what: string;
  run: (ctx: Ctx) => Promise<unknown>;
  error: ErrorClass;
  message: RegExp;
}

interface Ctx {
  worker: Worker;
  files: string;
  sourceWeights: string;
  /** A session with a source (small_resnet width 8 on MNIST, 2 labels per class). */
  sessionId: string;
}

const mnist = data.mnist({ labelsPerClass: 2, valPerClass: 2, testPerClass: 5 });

function sessionRequest(ctx: Ctx, patch: Partial<CreateSessionRequest> = {}, target: DataSpec = mnist): CreateSessionRequest {
  return { ...toCreateSessionRequest({ backbone: tinyBackbone, data: target, seed: 0, sourceWeights: ctx.sourceWeights }), ...patch };
}

function stageMessage(patch: Partial<StageMessage> = {}, regularizer: RegularizerSpec = afaSpatial({ alpha: 1e-3 })): StageMessage {
  return { ...toStageMessage(stage({ regularizer, iterations: 2, batchSize: 8 }), 0), ...patch };
}

function withToken(c: Ctx): Metadata {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${c.worker.token}`);
  return metadata;
}

/** Resolves once the context's session accepts calls again (a cancelled stage ends at its next step). */
async function untilIdle(c: Ctx): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const busy = await c.worker.client.evaluate(c.sessionId, Split.SPLIT_VAL).then(() => false, (e: unknown) => e instanceof SessionBusyError);
    if (!busy) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the session stayed busy for a minute after its stage was cancelled');
}

async function runStage(ctx: Ctx, message: StageMessage, sessionId = ctx.sessionId): Promise<void> {
  for await (const _event of ctx.worker.client.runStage(sessionId, message)) {
    // drain
  }
}

const create = (ctx: Ctx, patch: Partial<CreateSessionRequest> = {}, target?: DataSpec) =>
  ctx.worker.client.createSession(sessionRequest(ctx, patch, target));
const withOptimizer = (o: Partial<StageMessage['optimizer'] & object>): Partial<StageMessage> => ({
  optimizer: { ...stageMessage().optimizer!, ...o },
});

const BAD_INPUTS: BadInput[] = [
  { what: 'a 1 MB backbone name (quoted clipped, not echoed whole)', run: (c) => create(c, { backbone: { name: 'x'.repeat(1 << 20), inChannels: 0, width: 0, depth: 0 } }),
    error: SpecError, message: /^(?=[\s\S]{0,1500}$)backbone\.name: must be at most 200 characters, got 1048576 \('x{40}'\.\.\.\)$/ },
  { what: 'lr 1e308 (overflows float32)', run: (c) => runStage(c, stageMessage(withOptimizer({ lr: 1e308 }))), error: SpecError,
    message: /^stage\.optimizer\.lr: must be at most 3\.403e\+38 \(it becomes float32 in the model\)/ },
  { what: 'infinite DELTA temperature', run: (c) => runStage(c, stageMessage({}, { kind: 'delta', alpha: 0.1, temperature: Infinity })),
    error: SpecError, message: /^stage\.regularizer\.delta\.temperature: must be a finite number > 0, got inf/ },
  { what: 'an unknown colour mode', run: (c) => create(c, { data: { ...sessionRequest(c).data!, color: 7 as ColorMode } }), error: SpecError,
    message: /^data\.color: unknown color mode 7 \(valid: COLOR_MODE_NATIVE, COLOR_MODE_GRAYSCALE, COLOR_MODE_RGB\)/ },
  { what: 'a spec_json that is not JSON', run: (c) => create(c, { specJson: '{"name": ' }), error: SpecError,
    message: /^spec_json: is not valid JSON/ },
  { what: '/etc/passwd as source weights', run: (c) => create(c, { sourceWeights: '/etc/passwd' }), error: SpecError,
    message: /^source_weights: \/etc\/passwd is not a weights file \(neither safetensors nor a torch\.save file\)/ },
  { what: 'a FIFO in an ImageFolder (never opened)', run: (c) => create(c, {}, data.imageFolder(join(c.files, 'folder-fifo'), { color: 'grayscale' })),
    error: SpecError, message: /^data\.image_folder\.root: .*pipe\.png is not a regular file/ },
  { what: 'a decompression-bomb image', run: (c) => create(c, {}, data.imageFolder(join(c.files, 'folder-bomb'), { color: 'grayscale', imageSize: 8 })),
    error: SpecError, message: /^data\.image_folder\.root: 1 image does not decode .*train\/a\/bomb\.png: has 9000x9000 pixels, more than the 67108864/ },
  { what: 'num_threads while another session is open', run: (c) => create(c, { numThreads: 2 }), error: SpecError,
    message: /^num_threads: other sessions are running on this worker's 1 torch threads/ },
  { what: 'unknown backbone', run: (c) => create(c, { backbone: { name: 'resnet7', inChannels: 0, width: 0, depth: 0 } }), error: SpecError,
    message: /^backbone\.name: unknown backbone 'resnet7' \(valid: small_resnet, resnet18, resnet34, resnet50, resnet101, mobilenet_v2/ },
  { what: 'layer path not in the model', run: (c) => create(c, { layers: ['layer4.0'] }), error: SpecError,
    message: /^layers: 'layer4\.0' is not a module of this backbone \(valid: conv1, bn1, relu, layer1/ },
  { what: 'the head as an aligned layer', run: (c) => create(c, { layers: ['fc'] }), error: SpecError, message: /^layers: 'fc' is not a module/ },
  { what: 'input channels that do not match the data', run: (c) => create(c, { backbone: { name: 'small_resnet', inChannels: 3, width: 8, depth: 1 } }),
    error: SpecError, message: /^backbone\.in_channels: 3 does not match the data's 1 channels/ },
  { what: 'a device this worker does not have', run: (c) => create(c, { device: 'cuda:7' }), error: SpecError,
    message: /^device: 'cuda:7' is not available on this worker \(valid: cpu/ },
  { what: 'negative alpha', run: (c) => runStage(c, stageMessage({}, afaSpatial({ alpha: -0.1 }))), error: SpecError,
    message: /^stage\.regularizer\.afa_spatial\.alpha: alpha must be a finite number >= 0, got -0\.1/ },
  { what: 'NaN alpha', run: (c) => runStage(c, stageMessage({}, afaSpatial({ alpha: NaN }))), error: SpecError, message: /afa_spatial\.alpha: .*got nan/ },
  { what: 'infinite alpha', run: (c) => runStage(c, stageMessage({}, afaSpatial({ alpha: Infinity }))), error: SpecError, message: /afa_spatial\.alpha: .*got inf/ },
  { what: 'negative lr', run: (c) => runStage(c, stageMessage(withOptimizer({ lr: -1 }))), error: SpecError, message: /^stage\.optimizer\.lr: must be a finite number > 0, got -1/ },
  { what: 'NaN lr', run: (c) => runStage(c, stageMessage(withOptimizer({ lr: NaN }))), error: SpecError, message: /^stage\.optimizer\.lr: .*got nan/ },
  { what: 'negative beta', run: (c) => runStage(c, stageMessage({ headL2: -0.01 })), error: SpecError, message: /^stage\.head_l2: must be a finite number >= 0/ },
  { what: 'NaN beta', run: (c) => runStage(c, stageMessage({ headL2: NaN })), error: SpecError, message: /^stage\.head_l2: .*got nan/ },
  { what: 'zero iterations', run: (c) => runStage(c, stageMessage({ iterations: 0 })), error: SpecError, message: /^stage\.iterations: must be > 0, got 0/ },
  { what: 'zero batch size', run: (c) => runStage(c, stageMessage({ batchSize: 0 })), error: SpecError, message: /^stage\.batch_size: must be > 0, got 0/ },
  { what: 'momentum of 1', run: (c) => runStage(c, stageMessage(withOptimizer({ momentum: 1 }))), error: SpecError, message: /^stage\.optimizer\.momentum: must be in \[0, 1\)/ },
  { what: 'lr step outside the stage', run: (c) => runStage(c, stageMessage({ lrSchedule: { kind: { $case: 'step', value: { atFractions: [1.5], gamma: 0.1 } } } })),
    error: SpecError, message: /^stage\.lr_schedule\.step\.at_fractions: each must be in \(0, 1\)/ },
  { what: 'no regulariser', run: (c) => runStage(c, stageMessage({ regularizer: { kind: undefined } })), error: SpecError,
    message: /^stage\.regularizer: no regulariser given \(valid: none, l2fe, l2sp, feature_map, delta, afa_spatial, afa_channel\)/ },
  { what: 'alignment on a session without a source', run: async (c) => {
      const s = await c.worker.client.createSession(sessionRequest(c, { sourceWeights: '', noSource: true }));
      return runStage(c, stageMessage(), s.sessionId);
    }, error: SpecError, message: /^stage\.regularizer: afa_spatial aligns to a source model, and this session has none/ },
  { what: 'labels per class above what a class has', run: (c) => create(c, {}, data.mnist({ labelsPerClass: 5000 })), error: SpecError,
    message: /^data\.labels_per_class: 5000 exceeds the \d+ training images class '\d' has after the validation split; use at most \d+/ },
  { what: 'validation split that leaves no training images', run: (c) => create(c, {}, data.mnist({ valPerClass: 5000 })), error: SpecError,
    message: /^data\.val_per_class: 5000 leaves no training images/ },
  { what: 'class index out of range', run: (c) => create(c, {}, data.fashionMnist({ classes: [3, 11], labelsPerClass: 2 })), error: SpecError,
    message: /^data\.classes: \[3, 11\] must be distinct class indices \(valid: 0 \(T-shirt\/top\)/ },
  { what: 'missing data directory', run: (c) => create(c, {}, data.fashionMnist({ directory: '/no/such/dir' })), error: SpecError,
    message: /^data\.fashion_mnist\.directory: directory \/no\/such\/dir does not exist/ },
  { what: 'empty data directory', run: (c) => create(c, {}, data.mnist({ directory: join(c.files, 'empty') })), error: SpecError,
    message: /^data\.mnist\.directory: .*0\.json not found \(expected 0\.json \.\. 9\.json\)/ },
  { what: 'truncated IDX file', run: (c) => create(c, {}, data.fashionMnist({ directory: join(c.files, 'fashion-truncated') })), error: SpecError,
    message: /^data\.fashion_mnist\.directory: .*train-images-idx3-ubyte\.gz is truncated or corrupt/ },
  { what: 'a file that is not IDX', run: (c) => create(c, {}, data.fashionMnist({ directory: join(c.files, 'fashion-badmagic') })), error: SpecError,
    message: /is not an IDX file \(bad magic number\)/ },
  { what: 'corrupt MNIST JSON', run: (c) => create(c, {}, data.mnist({ directory: join(c.files, 'mnist-corrupt') })), error: SpecError,
    message: /^data\.mnist\.directory: .*4\.json is not valid mnist JSON/ },
  { what: 'corrupt image in an ImageFolder', run: (c) => create(c, {}, data.imageFolder(join(c.files, 'folder-corrupt'), { color: 'grayscale', imageSize: 8 })),
    error: SpecError, message: /^data\.image_folder\.root: 1 image does not decode .*train\/a\/broken\.png: not an image Pillow can decode/ },
  { what: 'a class folder with no images', run: (c) => create(c, {}, data.imageFolder(join(c.files, 'folder-empty-class'), { color: 'grayscale', imageSize: 8 })),
    error: SpecError, message: /^data\.image_folder\.root: 1 class folder has no images \(\.png, .*\): .*\/train\/c$/ },
  { what: 'an ImageFolder without train/', run: (c) => create(c, {}, data.imageFolder(join(c.files, 'folder-no-train'))), error: SpecError,
    message: /has no train\/ folder \(expected train\/ and optional val\/ and test\/\)/ },
  { what: 'weights for another architecture', run: (c) => create(c, { sourceWeights: join(c.files, 'resnet18.pt') }), error: SpecError,
    message: /^source_weights: .*resnet18\.pt does not fit this backbone: \S+ has shape \[64, 3, 7, 7\], the model expects \[8, 1, 3, 3\]/ },
  { what: 'weights with wrong shapes', run: (c) => create(c, { sourceWeights: join(c.files, 'small16.pt') }), error: SpecError,
    message: /^source_weights: .*small16\.pt does not fit this backbone: conv1\.weight has shape \[16, 1, 3, 3\], the model expects \[8, 1, 3, 3\]/ },
  { what: 'a pickle that is not plain tensors (never executed)', run: (c) => create(c, { sourceWeights: join(c.files, 'evil.pt') }), error: SpecError,
    message: /^source_weights: .*evil\.pt was refused: it holds objects other than plain tensors, and the worker never unpickles code/ },
  { what: 'a weights file that does not exist', run: (c) => create(c, { sourceWeights: '/no/weights.safetensors' }), error: SpecError,
    message: /^source_weights: weights file \/no\/weights\.safetensors does not exist/ },
  { what: 'garbage in a .safetensors file', run: (c) => create(c, { sourceWeights: join(c.files, 'garbage.safetensors') }), error: SpecError,
    message: /^source_weights: .*garbage\.safetensors is not a valid safetensors file/ },
  { what: 'unknown session id (RunStage)', run: (c) => runStage(c, stageMessage(), 'no-such-session'), error: NotFoundError,
    message: /session_id: no session 'no-such-session'/ },
  { what: 'unknown session id (Evaluate)', run: (c) => c.worker.client.evaluate('no-such-session', Split.SPLIT_VAL), error: NotFoundError,
    message: /session_id: no session 'no-such-session'/ },
  { what: 'a test split the data does not have', run: async (c) => {
      const s = await c.worker.client.createSession(sessionRequest(c, {}, data.imageFolder(join(c.files, 'folder-ok'), { color: 'grayscale', imageSize: 8 })));
      return c.worker.client.evaluate(s.sessionId, Split.SPLIT_TEST);
    }, error: SpecError, message: /^split: this session's data has no test split/ },
  { what: 'a checkpoint path that cannot be written', run: (c) => c.worker.client.saveCheckpoint(c.sessionId, '/proc/nope/model.safetensors'),
    error: SpecError, message: /^path: cannot write \/proc\/nope\/model\.safetensors/ },
  { what: 'a second RunStage on a busy session', run: async (c) => {
      const controller = new AbortController();
      const long = c.worker.client.runStage(c.sessionId, stageMessage({ iterations: 1_000_000, logEvery: 1 }, noRegularizer()), { signal: controller.signal });
      await long.next(); // started
      try {
        await runStage(c, stageMessage());
      } finally {
        controller.abort();
        await long.next().catch(() => undefined);
        await untilIdle(c); // the worker ends the cancelled stage at its next step

      }
    }, error: SessionBusyError, message: /session \w+ is busy running stage 'none'; RunStage waits until it ends \(or cancel it\)/ },
  { what: 'a message over the size limit', run: async (c) => {
      // A client whose own limit is higher, so the worker's 16 MiB limit is what answers.
      const client = new AfaWorkerClient(c.worker.address, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
      try {
        return await new Promise((resolve, reject) =>
          client.createSession(sessionRequest(c, { specJson: 'x'.repeat(20 << 20) }), withToken(c), (e: ServiceError | null, r: unknown) =>
            (e ? reject(fromGrpcError('CreateSession', e)) : resolve(r)))); // the SDK's own status mapping
      } finally {
        client.close();
      }
    }, error: ResourceExhaustedError, message: /Received message larger than max|larger than max/ },
];

describe('reliability: bad inputs against one real worker', function () {
  this.timeout(300_000);
  const ctx = {} as Ctx;

  before(async () => {
    ctx.files = tempDir('afa-bad-');
    const python = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');
    await execa(python, ['test/fixtures/make-bad-files.py', ctx.files], { env: { PYTHONPATH: 'python-worker' } });
    ctx.worker = await startTestWorker();
    const { path } = await ctx.worker.prepareSource(tinyBackbone, (await import('./fixtures/specs.js')).tinySource);
    ctx.sourceWeights = path;
    ctx.sessionId = (await ctx.worker.client.createSession(sessionRequest(ctx))).sessionId;
  });
  after(async () => {
    await ctx.worker.stop();
  });

  for (const bad of BAD_INPUTS) {
    it(`${bad.what}: ${bad.error.name}, and the worker keeps serving`, async () => {
      try {
        await bad.run(ctx);
        expect.fail('the worker accepted it');
      } catch (error) {
        expect(error, String(error)).to.be.instanceOf(bad.error);
        expect((error as Error).message, (error as Error).message.slice(0, 600)).to.match(bad.message);
      }
      const info = await ctx.worker.info({ timeoutMs: 5000 });
      expect(info.pid).to.equal(ctx.worker.pid);
    });
  }

  it('the refused pickle never ran its payload', () => {
    expect(existsSync(join(ctx.files, 'PWNED'))).to.equal(false);
  });

  it('training that diverges ends the stage with a failed status, not silent NaNs', async () => {
    const events = [];
    for await (const e of ctx.worker.client.runStage(ctx.sessionId, stageMessage({ ...withOptimizer({ lr: 1e8 }), iterations: 50, logEvery: 0, evalEvery: 0 }, noRegularizer()))) {
      events.push(e);
    }
    const summary = events.at(-1)!.event;
    expect(summary?.$case).to.equal('summary');
    if (summary?.$case === 'summary') {
      expect(summary.value.status).to.equal(3); // STAGE_STATUS_DIVERGED
      expect(summary.value.message).to.match(/loss became (nan|inf) at step \d+; lower the lr or alpha/);
    }
  });
});
