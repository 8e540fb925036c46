"""Shared fixtures: the real EfficientNet-Lite0 (loaded once) and tiny models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``): its
    numbers then match across machines and runs, and it does not fight other jobs for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def browser():
    """One headless system Chromium for the whole session (Playwright's sync API allows one instance per
    thread): the browser tests and the report tests share it."""
    from playwright.sync_api import sync_playwright

    from benchmarks.pages import find_chromium

    path = find_chromium()
    if path is None:
        pytest.skip("no system Chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="session")
def lite0():
    from core.models import resolve_model

    return resolve_model("efficientnet_lite0")


class TinyVideoNet(nn.Module):
    """(B, 3, T, H, W) -> (B, 4): a 3-D conv stage, a 2-D-per-frame stage, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv3d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)).mean(dim=(2, 3, 4)))


@pytest.fixture
def tiny_video_net() -> TinyVideoNet:
    torch.manual_seed(0)
    return TinyVideoNet().eval()


@pytest.fixture
def interrupt_training(monkeypatch):
    """``install()`` makes ``precompute.train.evaluate`` raise KeyboardInterrupt on its second call
    (the end of epoch 2: a training job killed part way) and returns ``restore()``."""
    from precompute import train

    real = train.evaluate

    def install():
        calls = []

        def interrupt_in_epoch_2(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(train, "evaluate", interrupt_in_epoch_2)
        return lambda: monkeypatch.setattr(train, "evaluate", real)

    return install
