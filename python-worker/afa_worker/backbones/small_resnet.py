"""A small ResNet for 28x28 inputs (Fashion-MNIST, MNIST): a 3x3 stem and three stages of basic
blocks at widths w, 2w, 4w (strides 1, 2, 2), so the stage outputs are 28, 14 and 7 pixels wide."""

from __future__ import annotations

import torch
from torch import nn

from afa_worker.backbones.resnet import BasicBlock

__all__ = ["SmallResNet"]


class SmallResNet(nn.Module):
    head_name = "fc"

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, depth: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = width
        self.layer1 = self._make_layer(width, depth, 1)
        self.layer2 = self._make_layer(width * 2, depth, 2)
        self.layer3 = self._make_layer(width * 4, depth, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 4, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))
