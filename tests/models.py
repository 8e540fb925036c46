"""Tiny image models shared by the VCC tests: an in-memory CNN and the source of a ``py:`` spec file."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """(B, 3, 32, 32) -> (B, 5): three conv stages (16, 8, 4 px), GAP, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.head = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.stem(x))).mean((2, 3)))


# The same shape of network as a ``py:<file>:build`` model file (class names and stages in MODEL_SPEC),
# for the jobs, which load models by spec.
MODEL_PY = '''
import torch
from torch import nn

CLASSES = ["red", "green", "blue", "yellow", "purple"]
MODEL_SPEC = {"input": "image", "size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
              "classes": CLASSES, "stages": ["stem", "block1", "block2"]}


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.block1 = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        return self.head(self.block2(self.block1(self.stem(x))).mean((2, 3)))


def build():
    torch.manual_seed(0)
    return TinyCNN()
'''
