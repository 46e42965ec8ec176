// A client built at run time from proto/ (no generated code) talks to the real worker: the
// committed stubs and the contract agree, and the health service speaks the standard wire format.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { expect } from 'chai';
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BACKBONE_NAMES, DATA_KINDS, LIMITS, REGULARIZER_KINDS, SpecError, type Worker } from '../ts-sdk/src/index.js';
import { fieldViolation } from '../ts-sdk/src/client/status-details.js';
import { startTestWorker } from './helpers.js';

type Callback<T> = (error: grpc.ServiceError | null, response: T) => void;
type DynamicClient = grpc.Client & Record<string, (req: object, metadata: grpc.Metadata, cb: Callback<Record<string, unknown>>) => void>;

function loadDynamic(address: string): { afa: DynamicClient; health: DynamicClient } {
  const definition = protoLoader.loadSync(['afa/v1/afa.proto', 'grpc/health/v1/health.proto'], {
    includeDirs: ['proto'],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    afa: { v1: { AfaWorker: new (a: string, c: grpc.ChannelCredentials) => DynamicClient } };
    grpc: { health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => DynamicClient } } };
  };
  const creds = grpc.credentials.createInsecure();
  return { afa: new loaded.afa.v1.AfaWorker(address, creds), health: new loaded.grpc.health.v1.Health(address, creds) };
}

let token = '';

function call<T>(client: DynamicClient, method: string, request: object): Promise<T> {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => client[method]!(request, metadata, (e, r) => (e ? reject(e) : resolve(r as T))));
}

describe('contract: dynamic proto-loader client against the real worker', () => {
  let worker: Worker;
  before(async () => {
    worker = await startTestWorker();
    token = worker.token!;
  });
  after(async () => {
    await worker.stop();
  });

  it('GetInfo answers the dynamic client with the same fields as the generated one', async () => {
    const { afa } = loadDynamic(worker.address);
    const dynamic = await call<Record<string, unknown>>(afa, 'GetInfo', {});
    const generated = await worker.info();
    expect(dynamic.protocol_version).to.equal(generated.protocolVersion);
    expect(dynamic.torch_version).to.equal(generated.torchVersion);
    expect(dynamic.backbones).to.deep.equal(generated.backbones);
    expect(dynamic.regularizers).to.deep.equal(generated.regularizers);
    afa.close();
  });

  it('the DSL lists exactly the regularisers, data sets and backbones the worker knows, in its order', async () => {
    const info = await worker.info();
    // The proto's field names are snake_case; ts-proto's oneof cases are their camelCase.
    const snake = (kind: string) => kind.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    expect(REGULARIZER_KINDS.map(snake)).to.deep.equal(info.regularizers);
    expect(DATA_KINDS.map(snake)).to.deep.equal(info.datasets);
    expect([...BACKBONE_NAMES]).to.deep.equal(info.backbones.filter((name) => !name.endsWith(':NAME')));
  });

  it('the SDK checks the same bounds as the worker', async () => {
    const python = join(process.cwd(), 'python-worker', '.venv', 'bin', 'python');
    const printed = await execa(python, ['-c', 'import json; from afa_worker.limits import LIMITS; print(json.dumps(LIMITS))'],
      { cwd: 'python-worker' });
    const camel = (name: string) => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
    const worker = Object.fromEntries(Object.entries(JSON.parse(printed.stdout) as Record<string, number>).map(([k, v]) => [camel(k), v]));
    expect(LIMITS).to.deep.equal(worker);
  });

  it('the worker package has the version of the npm package that ships it', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    expect((await worker.info()).workerVersion).to.equal(version);
  });

  it('health Check reports SERVING for the server and the AfaWorker service, NOT_FOUND for others', async () => {
    const { health } = loadDynamic(worker.address);
    expect((await call<{ status: string }>(health, 'Check', { service: '' })).status).to.equal('SERVING');
    expect((await call<{ status: string }>(health, 'Check', { service: 'afa.v1.AfaWorker' })).status).to.equal('SERVING');
    try {
      await call(health, 'Check', { service: 'no.such.Service' });
      expect.fail('unknown service must fail');
    } catch (error) {
      expect((error as grpc.ServiceError).code).to.equal(grpc.status.NOT_FOUND);
    }
    health.close();
  });

  it('a bad spec from the dynamic client gets INVALID_ARGUMENT naming the field and the valid values', async () => {
    const { afa } = loadDynamic(worker.address);
    try {
      await call(afa, 'CreateSession', { backbone: { name: 'no_such_net' }, data: { mnist: {} } });
      expect.fail('unknown backbone must be rejected');
    } catch (error) {
      const e = error as grpc.ServiceError;
      expect(e.code).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(e.details).to.match(/^backbone\.name: unknown backbone 'no_such_net' \(valid: small_resnet, resnet18/);
      // The same facts as data, in the standard status details any gRPC client can read.
      expect(fieldViolation(e.metadata)).to.deep.equal({ field: 'backbone.name', problem: "unknown backbone 'no_such_net'",
        valid: [...BACKBONE_NAMES, ...(await worker.info()).backbones.filter((n) => n.endsWith(':NAME'))] });
    }
    afa.close();
  });

  it("the SDK's SpecError takes field and valid from the status details, not from the message", async () => {
    try {
      await worker.client.createSession({ ...(await import('../ts-sdk/src/run/convert.js')).toCreateSessionRequest({
        backbone: { name: 'small_resnet', width: 4 }, data: { kind: 'mnist', labelsPerClass: 2, valPerClass: 2 }, seed: 0 }),
      layers: ['layer9'] });
      expect.fail('an unknown layer must be rejected');
    } catch (error) {
      expect(error).to.be.instanceOf(SpecError);
      const e = error as SpecError;
      expect(e.field).to.equal('layers');
      expect(e.problem).to.equal("'layer9' is not a module of this backbone");
      expect(e.valid).to.include.members(['conv1', 'layer1.0', 'layer3.0.conv2']);
      expect(e.valid).to.not.include('fc'); // the head is no aligned layer
    }
    // Without details (a status from elsewhere) nothing is guessed from the text.
    const bare = new SpecError('X', 'field.name: looks like a field (valid: a, b)');
    expect([bare.field, bare.valid]).to.deep.equal(['', undefined]);
  });
});

describe('codegen', () => {
  it('the committed generated code is what proto/ generates now', async function () {
    this.timeout(60_000);
    const result = await execa('scripts/check-proto.sh', { reject: false, all: true });
    expect(result.exitCode, String(result.all)).to.equal(0);
  });
});

describe("the worker's field paths, named as the spec spells them", () => {
  it('maps every kind of contract path back to the DSL: oneof cases collapse, snake_case becomes camelCase, each part at its place', async () => {
    const { toSpecField } = await import('../ts-sdk/src/proto.js');
    const cases: Array<[string, Parameters<typeof toSpecField>[1], string]> = [
      ['data.labels_per_class', {}, 'target.labelsPerClass'],
      ['data.image_folder.root', {}, 'target.root'],
      ['data.fashion_mnist.directory', { data: 'source.data' }, 'source.data.directory'],
      ['data.dataset', {}, 'target.kind'],
      ['data.classes', { data: 'data' }, 'data.classes'],
      ['backbone.in_channels', {}, 'backbone.inChannels'],
      ['layers', {}, 'backbone.layers'],
      ['source_weights', {}, 'source.path'],
      ['source_weights_sha256', { sourceWeights: 'sourceWeights' }, 'sourceWeights'],
      ['stage.regularizer.afa_spatial.alpha', { stage: 'schedule[2]' }, 'schedule[2].regularizer.alpha'],
      ['stage.regularizer.afa_channel.uniform_floor', { stage: 'schedule[0]' }, 'schedule[0].regularizer.uniformFloor'],
      ['stage.regularizer.none.weight_decay', {}, 'regularizer.weightDecay'],
      ['stage.regularizer', { stage: 'schedule[1]' }, 'schedule[1].regularizer'],
      ['stage.lr_schedule.step.at_fractions', { stage: 'schedule[0]' }, 'schedule[0].lrSchedule.atFractions'],
      ['stage.optimizer.lr', { stage: 'schedule[0]' }, 'schedule[0].optimizer.lr'],
      ['stage.head_lr_multiplier', { stage: 'schedule[0]' }, 'schedule[0].headLrMultiplier'],
      ['stage.alpha_relative', { stage: 'schedule[0]' }, 'schedule[0].regularizer.alpha.relative'],
      ['stage.no_feature_cache', { stage: 'schedule[0]' }, 'schedule[0].featureCache'],
      ['stage.attention_images', { stage: 'schedule[0]' }, 'attentionImages'],
      ['device', {}, 'device'],
      ['spec_json', {}, 'specJson'],
    ];
    for (const [contract, context, spec] of cases) expect(toSpecField(contract, context), contract).to.equal(spec);
  });

  it("names the contract's fields a refusal's problem mentions as the spec spells them, and leaves other words alone", async () => {
    const { inSpecTerms } = await import('../ts-sdk/src/run/convert.js');
    const { SpecError } = await import('../ts-sdk/src/errors.js');
    const problem = '2 images do not decode (skip_bad_files skips them); set image_size, or fewer labels_per_class; lambda_max stays; create it with source_weights';
    const refusal = new SpecError('CreateSession', `data.image_folder.root: ${problem}`, { field: 'data.image_folder.root', problem, valid: undefined });
    const mapped = inSpecTerms(refusal, { data: 'source.data' }) as InstanceType<typeof SpecError>;
    expect(mapped.field).to.equal('source.data.root');
    expect(mapped.problem).to.equal('2 images do not decode (source.data.skipBadFiles skips them); set source.data.imageSize, or fewer '
      + 'source.data.labelsPerClass; lambda_max stays; create it with source.path');
    expect(mapped.message).to.equal(`source.data.root: ${mapped.problem}`);
    const plain = new SpecError('RunStage', 'stage.iterations: must be at least 1', { field: 'iterations', problem: 'must be at least 1', valid: undefined });
    expect(inSpecTerms(plain)).to.equal(plain); // nothing to rename: the error itself
  });
});
