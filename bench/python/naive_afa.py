"""The yardstick: an AFA channel-attention step written the way public research code usually is.

Forward hooks append to Python lists, the loss walks the layers in a Python loop and recomputes
norms, and every step reads `.item()` for logging. Same model, batch, attention module and formula
as the worker's step, so the two are timed on equal work. Not used by the product."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NaiveAFAStep:
    def __init__(self, target: nn.Module, source: nn.Module, layers: list[str], attention: nn.ModuleList, alpha: float,
                 head: nn.Linear, lr: float = 0.01):
        self.target, self.source, self.layers, self.attention, self.alpha, self.head = target, source, layers, attention, alpha, head
        self.t_feats: list[torch.Tensor] = []
        self.s_feats: list[torch.Tensor] = []
        for name in layers:
            target.get_submodule(name).register_forward_hook(lambda m, i, o: self.t_feats.append(o))
            source.get_submodule(name).register_forward_hook(lambda m, i, o: self.s_feats.append(o))
        params = [p for p in target.parameters() if p.requires_grad] + list(attention.parameters())
        self.opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
        self.log: list[tuple[float, float, float]] = []

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.t_feats.clear()
        self.s_feats.clear()
        with torch.no_grad():
            self.source(x)
        logits = self.target(x)
        ce = F.cross_entropy(logits, y)
        reg = 0.0
        for i in range(len(self.layers)):
            ft, fs = self.t_feats[i], self.s_feats[i].detach()
            b, c, h, w = ft.shape
            a = self.attention[i](fs)
            # norms per channel, recomputed from the difference for the loss and again for the log
            dist = torch.norm((ft - fs).view(b, c, -1), dim=2) ** 2
            reg = reg + 0.5 * (c * a * dist).sum() / b
            _ = torch.norm((ft - fs).view(b, c, -1), dim=2).mean().item()
        head_term = 0.01 * 0.5 * self.head.weight.pow(2).sum()
        loss = ce + self.alpha * reg + head_term
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        acc = (logits.argmax(1) == y).float().mean().item()
        self.log.append((loss.item(), float(reg.item()) if torch.is_tensor(reg) else reg, acc))
