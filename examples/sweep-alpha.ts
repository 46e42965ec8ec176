/**
 * A sweep: alpha x method x 3 seeds on Fashion-MNIST -> MNIST (10 labels per class), selected on
 * validation accuracy (test is reported, never used to choose).
 *
 *   npx afa sweep examples/sweep-alpha.ts --workers 2
 *   npx afa results afa-sweeps/sweep-alpha          (add --csv for a spreadsheet)
 *   npx afa report afa-sweeps/sweep-alpha           (a self-contained HTML file with plots)
 *
 * The method dimension replaces the whole schedule; the alpha dimension then sets the first
 * stage's alpha (for AFA, the spatial stage; its channel stage keeps alpha 1e-2).
 */
import { afa, backbone, baseline, choice, data, experiment, grid, pretrain, sweep } from '../ts-sdk/src/index.js';
import { QUICK, scaled } from './_scale.js';

const T = scaled(300, 4);

const base = experiment({
  name: 'sweep-alpha',
  backbone: backbone.smallResNet({ width: scaled(16, 8) }),
  source: pretrain({ data: data.fashionMnist({ testPerClass: 100 }), iterations: scaled(1500, 20), batchSize: 128 }),
  target: data.mnist({ labelsPerClass: 10, valPerClass: 10 }),
  schedule: baseline.featureMap({ alpha: 1e-3, iterations: T }),
});

export default sweep({
  name: 'sweep-alpha',
  base,
  space: {
    schedule: choice({
      'feature-map': baseline.featureMap({ alpha: 1e-3, iterations: T }),
      DELTA: baseline.delta({ alpha: 1e-3, iterations: T }),
      AFA: afa({ spatial: { alpha: 1e-3, iterations: T / 2 }, channel: { alpha: 1e-2, iterations: T / 2 } }),
    }),
    'schedule[0].regularizer.alpha': grid(QUICK ? [1e-3] : [1e-4, 1e-3, 1e-2]),
  },
  seeds: QUICK ? [0] : [0, 1, 2],
  metric: 'bestValAccuracy',
});
