// Type-level tests: the `@ts-expect-error` lines must fail to compile (tsc, part of `make test`,
// reports an unused directive otherwise); the rest must compile. The function never runs.
import { expect } from 'chai';
import { afa, afaChannel, backbone, data, experiment, l2sp, pretrain, stage, weights } from '../ts-sdk/src/index.js';

function compileOnly(): void {
  const target = data.mnist({ labelsPerClass: 10 });
  const source = pretrain({ data: data.fashionMnist() });

  experiment({ name: 'ok', backbone: backbone.smallResNet({ width: 16 }), source, target, schedule: afa() });

  // @ts-expect-error: a missing target
  experiment({ name: 'no-target', backbone: backbone.smallResNet(), source, schedule: afa() });

  // @ts-expect-error: alpha of the wrong type
  afaChannel({ alpha: '0.1' });

  // @ts-expect-error: a regulariser option that does not exist
  l2sp({ alpha: 0.1, temperature: 5 });

  // @ts-expect-error: a backbone that is not in the registry (and not torchvision:/timm:)
  experiment({ name: 'x', backbone: { name: 'resnet7' }, source, target, schedule: afa() });

  // torchvision:/timm: names are accepted as template literal types
  experiment({ name: 'tv', backbone: { name: 'torchvision:convnext_tiny' }, source: weights('/w.pt'), target, schedule: afa() });

  // @ts-expect-error: a stage needs iterations
  stage({ regularizer: l2sp({ alpha: 0.1 }) });

  // @ts-expect-error: the color mode is a closed set
  data.mnist({ color: 'cmyk' });

  // @ts-expect-error: afa() stage options are typed
  afa({ spatial: { alpha: 0.1, iterations: 'many' } });
}

describe('DSL types', () => {
  it('wrong specs do not compile, right ones do (checked by tsc in make test)', () => {
    expect(compileOnly).to.be.a('function');
  });
});
