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

const root = requirePath('AFA_DOGS_ROOT', 'a Stanford Dogs ImageFolder tree with train/ and test/');
const imagenet = requirePath('AFA_MOBILENETV2_WEIGHTS', "torchvision's ImageNet MobileNetV2 weights");

export default experiment({
  name: 'paper-mobilenetv2-stanford-dogs',
  seed: 0,
  backbone: backbone.mobilenetV2(),
  source: weights(imagenet),
  // The paper's transform (the reference code's): Resize((256, 256)), then RandomCrop(224) with a
  // horizontal flip for training, CenterCrop(224) for validation and test.
  target: data.imageFolder(root, { imageSize: 256, crop: 224, color: 'rgb', valPerClass: 10 }),
  schedule: afa({
    spatial: { alpha: PAPER_ALPHAS.mobilenetV2.spatial, iterations: 4500, lr: 0.01, evalEvery: 500, logEvery: 50 },
    channel: { alpha: PAPER_ALPHAS.mobilenetV2.channel, iterations: 4500, lr: 0.001, evalEvery: 500, logEvery: 50 },
    batchSize: 64,
  }),
});
