/** Backbones: the worker's registry names, plus torchvision:/timm: models when the worker has them. */

export const BACKBONE_NAMES = ['small_resnet', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'mobilenet_v2'] as const;
export type RegistryBackboneName = (typeof BACKBONE_NAMES)[number];
export type BackboneName = RegistryBackboneName | `torchvision:${string}` | `timm:${string}`;

export interface BackboneSpec {
  readonly name: BackboneName;
  /** Input channels. @default the data's channels */
  readonly inChannels?: number;
  /** small_resnet: channels of the first stage. @default 32 */
  readonly width?: number;
  /** small_resnet: residual blocks per stage. @default 1 */
  readonly depth?: number;
  /** Module paths whose feature maps are aligned. @default the backbone's (the paper's for ResNet-50/101, MobileNetV2) */
  readonly layers?: readonly string[];
}

export interface BackboneOptions {
  inChannels?: number;
  layers?: readonly string[];
}

export interface SmallResNetOptions extends BackboneOptions {
  width?: number;
  depth?: number;
}

function spec(name: BackboneName, options: SmallResNetOptions = {}): BackboneSpec {
  return { name, ...options };
}

export const backbone = {
  /** A ResNet for 28x28 inputs (three stages at widths w, 2w, 4w). */
  smallResNet: (options: SmallResNetOptions = {}): BackboneSpec => spec('small_resnet', { width: 32, depth: 1, ...options }),
  resnet18: (options: BackboneOptions = {}): BackboneSpec => spec('resnet18', options),
  resnet34: (options: BackboneOptions = {}): BackboneSpec => spec('resnet34', options),
  resnet50: (options: BackboneOptions = {}): BackboneSpec => spec('resnet50', options),
  resnet101: (options: BackboneOptions = {}): BackboneSpec => spec('resnet101', options),
  mobilenetV2: (options: BackboneOptions = {}): BackboneSpec => spec('mobilenet_v2', options),
  /** Any torchvision model by name (the worker must import torchvision). */
  torchvision: (model: string, options: BackboneOptions = {}): BackboneSpec => spec(`torchvision:${model}`, options),
  /** Any timm model by name (the worker must import timm). */
  timm: (model: string, options: BackboneOptions = {}): BackboneSpec => spec(`timm:${model}`, options),
} as const;
