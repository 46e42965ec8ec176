/**
 * Quick start: Fashion-MNIST source (pretrained once, then cached) -> MNIST with 10 labels per
 * class, transferred with AFA's two stages. Run it with the CLI:
 *
 *   npx afa run examples/quickstart.ts          (or: node_modules/.bin/tsx ts-sdk/src/cli/main.ts run ...)
 *
 * In your own project, import from 'afa-transfer' instead of the relative path.
 */
import { afa, backbone, data, experiment, pretrain } from '../ts-sdk/src/index.js';
import { scaled } from './_scale.js';

export default experiment({
  name: 'quickstart-fashion-to-mnist-10',
  seed: 0,
  backbone: backbone.smallResNet({ width: scaled(16, 8) }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: scaled(1500, 20), batchSize: 128, lr: 0.05 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
  // Alphas far below the paper's 0.1/0.15: across this domain gap those pull the target back onto
  // clothing features. `afa sweep` is the tool for settling them.
  schedule: afa({
    spatial: { alpha: 3e-4, iterations: scaled(150, 6), lr: 0.01 },
    channel: { alpha: 3e-3, iterations: scaled(150, 6), lr: 0.001 },
  }),
});
