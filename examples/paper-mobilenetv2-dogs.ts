/**
 * The paper's MobileNetV2 setting on Stanford Dogs 120: ImageNet weights, 224x224 RGB, batch 64,
 * T = 9000, the reference code's transform (256 -> random 224 crop + flip; center crop for eval), AST alpha 0.09 at lr 0.01 then ACT alpha 0.04 at lr 0.001, aligned layers
 * features.{5,9,13,17}.conv.2.
 *
 *   AFA_DOGS_ROOT=/data/dogs AFA_MOBILENETV2_WEIGHTS=/weights/mobilenet_v2.safetensors \
 *     npx afa run examples/paper-mobilenetv2-dogs.ts
 */
import { afa, backbone, data, experiment, PAPER_ALPHAS, weights } from '../ts-sdk/src/index.js';
import { requirePath } from './_paper.js';
import { scaled } from './_scale.js';

const root = requirePath('AFA_DOGS_ROOT', 'a Stanford Dogs ImageFolder tree with train/ and test/');
const imagenet = requirePath('AFA_MOBILENETV2_WEIGHTS', "torchvision's ImageNet MobileNetV2 weights");

export default experiment({
  name: 'paper-mobilenetv2-stanford-dogs',
  seed: 0,
  backbone: backbone.mobilenetV2(),
  source: weights(imagenet),
  // The paper's transform (the reference code's): Resize((256, 256)), then RandomCrop(224) with a
  // horizontal flip for training, CenterCrop(224) for validation and test.
  // Under the test suite (AFA_EXAMPLES_QUICK=1): the same configuration at 64 px, 2 steps a stage.
  target: data.imageFolder(root, { imageSize: scaled(256, 72), crop: scaled(224, 64), color: 'rgb', valPerClass: scaled(10, 1) }),
  schedule: afa({
    spatial: { alpha: PAPER_ALPHAS.mobilenetV2.spatial, iterations: scaled(4500, 2), lr: 0.01, evalEvery: scaled(500, 1), logEvery: scaled(50, 1) },
    channel: { alpha: PAPER_ALPHAS.mobilenetV2.channel, iterations: scaled(4500, 2), lr: 0.001, evalEvery: scaled(500, 1), logEvery: scaled(50, 1) },
    batchSize: scaled(64, 4),
  }),
});
