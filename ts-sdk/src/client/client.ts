/**
 * A typed client for one worker address: every RPC of `afa.v1.AfaWorker` and the health service,
 * as promises and async iterables with typed errors.
 */
import { ChannelCredentials, Metadata, credentials as grpcCredentials, type ChannelOptions } from '@grpc/grpc-js';
import {
  AfaWorkerClient,
  type CreateSessionRequest,
  type CreateSessionResponse,
  type EvaluateResponse,
  type PromoteTargetToSourceResponse,
  type SaveCheckpointResponse,
  type Split,
  type StageEvent,
  type StageSpec,
  type WeightsChunk,
  type WorkerInfo,
  type HasWeightsResponse,
  type PutWeightsResponse,
  type ExportOnnxResponse,
  type InputImage,
  type LoadModelRequest,
  type LoadModelResponse,
  type PredictResponse,
  type SessionEvent,
} from '../gen/afa/v1/afa.js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthClient,
} from '../gen/grpc/health/v1/health.js';
import { clientStream, defaultTranslator, serverStream, unary, type CallOptions, type ErrorTranslator } from './calls.js';
import { UnauthenticatedError } from '../errors.js';

export const AFA_SERVICE = 'afa.v1.AfaWorker';
/** Matches the worker's limit; larger messages are refused with RESOURCE_EXHAUSTED. */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface ClientOptions {
  /** Bearer token sent with every call. @default process.env.AFA_TOKEN */
  token?: string;
  /** TLS: PEM root certificates (or `true` for the system roots). @default plaintext (the token still goes with every call: use TLS beyond loopback) */
  tls?: boolean | { rootCerts?: Buffer };
  /** Turns errors into typed ones; the worker handle supplies one that detects crashes. */
  translate?: ErrorTranslator;
}

export { ServingStatus };

export class WorkerClient {
  readonly address: string;
  private readonly afa: AfaWorkerClient;
  private readonly health: HealthClient;
  private readonly metadata: Metadata;
  private readonly translate: ErrorTranslator;

  constructor(address: string, options: ClientOptions = {}) {
    this.address = address;
    const creds: ChannelCredentials = options.tls
      ? grpcCredentials.createSsl(typeof options.tls === 'object' ? options.tls.rootCerts : undefined)
      : grpcCredentials.createInsecure();
    const channelOptions: ChannelOptions = {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    };
    this.afa = new AfaWorkerClient(address, creds, channelOptions);
    // One channel for both services would need the channelOverride option; two are cheap on loopback.
    this.health = new HealthClient(address, creds, channelOptions);
    this.metadata = new Metadata();
    const token = options.token ?? process.env.AFA_TOKEN;
    if (token) this.metadata.set('authorization', `Bearer ${token}`);
    this.translate = options.translate ?? defaultTranslator;
  }

  getInfo(options: CallOptions = {}): Promise<WorkerInfo> {
    return unary('GetInfo', this.afa.getInfo.bind(this.afa), {}, this.metadata, options, this.translate);
  }

  createSession(request: CreateSessionRequest, options: CallOptions = {}): Promise<CreateSessionResponse> {
    return unary('CreateSession', this.afa.createSession.bind(this.afa), request, this.metadata, options, this.translate);
  }

  /** Streams one stage's events; the last one is the summary. */
  runStage(sessionId: string, stage: StageSpec, options: CallOptions = {}): AsyncGenerator<StageEvent, void, undefined> {
    return serverStream('RunStage', () => this.afa.runStage({ sessionId, stage }, this.metadata), options, this.translate);
  }

  evaluate(sessionId: string, split: Split, options: CallOptions & { batchSize?: number } = {}): Promise<EvaluateResponse> {
    const request = { sessionId, split, batchSize: options.batchSize ?? 0 };
    return unary('Evaluate', this.afa.evaluate.bind(this.afa), request, this.metadata, options, this.translate);
  }

  promoteTargetToSource(sessionId: string, options: CallOptions = {}): Promise<PromoteTargetToSourceResponse> {
    return unary('PromoteTargetToSource', this.afa.promoteTargetToSource.bind(this.afa), { sessionId }, this.metadata, options, this.translate);
  }

  /**
   * Writes the target to `path` on the worker's machine, or (`path` undefined) into its weight store,
   * with its model card (the experiment's spec hash and metrics: NaN where not measured).
   */
  saveCheckpoint(sessionId: string, path: string | undefined, card: { specHash?: string; bestValAccuracy?: number; testAccuracy?: number } = {},
    options: CallOptions = {}): Promise<SaveCheckpointResponse> {
    const request = { sessionId, path: path ?? '', toWeightStore: path === undefined, specHash: card.specHash ?? '',
      bestValAccuracy: card.bestValAccuracy ?? NaN, testAccuracy: card.testAccuracy ?? NaN };
    return unary('SaveCheckpoint', this.afa.saveCheckpoint.bind(this.afa), request, this.metadata, options, this.translate);
  }

  /** A checkpoint (path on the worker's machine, or sha256 in its store) as an inference-only session. */
  loadModel(request: LoadModelRequest, options: CallOptions = {}): Promise<LoadModelResponse> {
    return unary('LoadModel', this.afa.loadModel.bind(this.afa), request, this.metadata, options, this.translate);
  }

  predict(sessionId: string, images: InputImage[], topK = 0, options: CallOptions = {}): Promise<PredictResponse> {
    return unary('Predict', this.afa.predict.bind(this.afa), { sessionId, images, topK }, this.metadata, options, this.translate);
  }

  /** Exports the session's model to ONNX into the worker's store (checked against PyTorch first). */
  exportOnnx(sessionId: string, checkImages: InputImage[] = [], opset = 0, options: CallOptions = {}): Promise<ExportOnnxResponse> {
    return unary('ExportOnnx', this.afa.exportOnnx.bind(this.afa), { sessionId, checkImages, opset }, this.metadata, options, this.translate);
  }

  hasWeights(sha256: string, options: CallOptions = {}): Promise<HasWeightsResponse> {
    return unary('HasWeights', this.afa.hasWeights.bind(this.afa), { sha256 }, this.metadata, options, this.translate);
  }

  /** Uploads a weights file as chunks (the first naming its sha256 and size). */
  putWeights(chunks: AsyncIterable<WeightsChunk>, options: CallOptions = {}): Promise<PutWeightsResponse> {
    return clientStream('PutWeights', (callback) => this.afa.putWeights(this.metadata, callback), chunks, options, this.translate);
  }

  hasDataset(sha256: string, options: CallOptions = {}): Promise<HasWeightsResponse> {
    return unary('HasDataset', this.afa.hasDataset.bind(this.afa), { sha256 }, this.metadata, options, this.translate);
  }

  /** Uploads a packed data set as chunks (the first naming its sha256 and size). */
  putDataset(chunks: AsyncIterable<WeightsChunk>, options: CallOptions = {}): Promise<PutWeightsResponse> {
    return clientStream('PutDataset', (callback) => this.afa.putDataset(this.metadata, callback), chunks, options, this.translate);
  }

  /** CreateSession with its progress: Progress events of the phases, then the session. */
  openSession(request: CreateSessionRequest, options: CallOptions = {}): AsyncGenerator<SessionEvent, void, undefined> {
    return serverStream('OpenSession', () => this.afa.openSession(request, this.metadata), options, this.translate);
  }

  /** Downloads a file of the worker's weight store as chunks. */
  getWeights(sha256: string, options: CallOptions = {}): AsyncGenerator<WeightsChunk, void, undefined> {
    return serverStream('GetWeights', () => this.afa.getWeights({ sha256 }, this.metadata), options, this.translate);
  }

  async closeSession(sessionId: string, options: CallOptions = {}): Promise<void> {
    await unary('CloseSession', this.afa.closeSession.bind(this.afa), { sessionId }, this.metadata, options, this.translate);
  }

  /** The health status of `service` ("" = the whole server). */
  async checkHealth(service = '', options: CallOptions = {}): Promise<ServingStatus> {
    const response = await unary('Health.Check', this.health.check.bind(this.health), { service }, this.metadata, options, this.translate);
    return response.status;
  }

  /** Health status changes as an async iterator (the standard Watch RPC). */
  watchHealth(service = '', options: CallOptions = {}): AsyncGenerator<ServingStatus, void, undefined> {
    const stream = serverStream('Health.Watch', () => this.health.watch({ service }, this.metadata), options, this.translate);
    return (async function* () {
      for await (const response of stream) yield response.status;
    })();
  }

  /** Polls Check until SERVING or the deadline; resolves false on timeout. */
  async waitForServing(timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      signal?.throwIfAborted();
      try {
        const status = await this.checkHealth(AFA_SERVICE, { timeoutMs: Math.max(50, Math.min(1000, until - Date.now())), signal });
        if (status === ServingStatus.SERVING) return true;
      } catch (error) {
        // Not up yet, unless it answered and refused us: retrying will not change a wrong token.
        if (error instanceof UnauthenticatedError) return false;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  close(): void {
    this.afa.close();
    this.health.close();
  }
}
