/**
 * The paper's setting on Stanford Dogs 120 with ResNet-101 (Table 3: L2 83.3, L2-SP 88.3, DELTA
 * 88.7, AFA 90.1): ImageNet weights, 224x224 RGB, batch 64, T = 9000, AST alpha 0.1 at lr 0.01
 * then ACT alpha 0.15 at lr 0.001, aligned layers layer{1.2,2.3,3.22,4.2}.conv3.
 *
 *   AFA_DOGS_ROOT=/data/dogs AFA_RESNET101_WEIGHTS=/weights/resnet101.safetensors \
 *     npx afa run examples/paper-resnet101-dogs.ts
 *
 * AFA_DOGS_ROOT is an ImageFolder tree (train/<class>/..., test/<class>/...); the weights file is
 * torchvision's ResNet-101 ImageNet state dict as .safetensors or a plain-tensor .pth.
 */
import { afa, backbone, data, experiment, PAPER_ALPHAS, weights } from '../ts-sdk/src/index.js';
import { requirePath } from './_paper.js';
import { scaled } from './_scale.js';

const root = requirePath('AFA_DOGS_ROOT', 'a Stanford Dogs ImageFolder tree with train/ and test/');
const imagenet = requirePath('AFA_RESNET101_WEIGHTS', "torchvision's ImageNet ResNet-101 weights");

export default experiment({
  name: 'paper-resnet101-stanford-dogs',
  seed: 0,
  backbone: backbone.resnet101(),
  source: weights(imagenet),
  // The paper's transform (the reference code's): Resize((256, 256)), then RandomCrop(224) with a
  // horizontal flip for training, CenterCrop(224) for validation and test.
  // Under the test suite (AFA_EXAMPLES_QUICK=1): the same configuration at 64 px, 2 steps a stage.
  target: data.imageFolder(root, { imageSize: scaled(256, 72), crop: scaled(224, 64), color: 'rgb', valPerClass: scaled(10, 1) }),
  schedule: afa({
    spatial: { alpha: PAPER_ALPHAS.resnet101.spatial, iterations: scaled(4500, 2), lr: 0.01, evalEvery: scaled(500, 1), logEvery: scaled(50, 1) },
    channel: { alpha: PAPER_ALPHAS.resnet101.channel, iterations: scaled(4500, 2), lr: 0.001, evalEvery: scaled(500, 1), logEvery: scaled(50, 1) },
    batchSize: scaled(64, 4),
  }),
});
