/**
 * A served model: a node:http service that loads an exported model (`afa export --onnx`) and
 * answers `POST /predict` (the body: one image file, PNG or JPEG) with its top classes as JSON, and
 * `GET /health`. No Python at inference time: onnxruntime-node runs the graph, sharp decodes.
 *
 *   node_modules/.bin/tsx examples/serve.ts model.onnx [port]      (port 0: any free one, printed)
 *   curl --data-binary @digit.png http://127.0.0.1:8080/predict
 *
 * In your own project, import from 'afa-transfer' instead of the relative path.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { AfaError, loadModel, type Model } from '../ts-sdk/src/index.js';

/** The largest request body accepted: one image of a few megabytes, not a stream without end. */
const MAX_BODY_BYTES = 16 * 2 ** 20;

async function body(request: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error(`the body is over ${MAX_BODY_BYTES} bytes`), { status: 413 });
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

function send(response: ServerResponse, status: number, value: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' }).end(`${JSON.stringify(value)}\n`);
}

export function serve(model: Model, port = 0, host = '127.0.0.1'): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    const route = `${request.method} ${new URL(request.url ?? '/', 'http://x').pathname}`;
    if (route === 'GET /health') return send(response, 200, { status: 'ok', classes: model.classNames.length });
    if (route !== 'POST /predict') return send(response, 404, { error: 'routes: GET /health, POST /predict' });
    const top = Math.min(20, Math.max(1, Number(new URL(request.url!, 'http://x').searchParams.get('top') ?? 3) || 3));
    body(request)
      .then((image) => model.predict(image, { topK: top }))
      .then(([p]) => send(response, 200, { label: p!.label, name: p!.name, probability: p!.probability, top: p!.top }))
      .catch((error: unknown) => {
        const status = (error as { status?: number }).status ?? (error instanceof AfaError ? 400 : 500);
        send(response, status, { error: error instanceof Error ? error.message : String(error) });
      });
  });
  return new Promise((resolve) => server.listen(port, host, () => {
    const address = server.address() as { port: number };
    resolve({ url: `http://${host}:${address.port}`, close: () => new Promise((r) => server.close(() => r())) });
  }));
}

if (process.argv[1]?.endsWith('serve.ts')) {
  const [file, port] = process.argv.slice(2);
  if (!file) {
    console.error('usage: tsx examples/serve.ts model.onnx [port]');
    process.exit(2);
  }
  const model = await loadModel(file);
  const { url } = await serve(model, Number(port ?? 8080));
  console.log(`serving ${file} (${model.classNames.length} classes) at ${url}: POST ${url}/predict, GET ${url}/health`);
}
