"""Bad input from the command line, config files, model specs and media (issue 11, items 2, 5, 8, 9, 10).

Every case must end in exit status 2 and ONE line on stderr (or, where the issue says so, a warning
and a rebuilt cache / a skipped file), never a traceback. The CLI runs in-process.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data.images import image_folder, load_image
from core.errors import DataError, ModelSpecError
from core.models import resolve_model, zoo
from precompute import cli

VIDEO_MODEL = '''
from torch import nn
MODEL_SPEC = {"input": "video", "size": 32, "frames": 4}
def build():
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3))
'''

IMAGE_MODEL = '''
from torch import nn
MODEL_SPEC = {"size": 32}
def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
'''

TUPLE_MODEL = '''
import torch
from torch import nn
MODEL_SPEC = {"size": 32}
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
    def forward(self, x):
        feats = self.conv(x).mean(dim=(2, 3))
        return {"note": "no tensor here"} if x.shape[0] == 0 else (self.fc(feats), feats)
def build():
    return Net()
class Nothing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
    def forward(self, x):
        return {"note": "no tensor here"}
def nothing():
    return Nothing()
'''


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def err_of(capsys, *argv: str) -> str:
    """Run the CLI; it must exit 2 with exactly one line, an error, on stderr."""
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def video_py(tmp_path) -> str:
    return f"py:{write(tmp_path / 'video_model.py', VIDEO_MODEL)}:build"


@pytest.fixture
def image_py(tmp_path) -> str:
    return f"py:{write(tmp_path / 'image_model.py', IMAGE_MODEL)}:build"


@pytest.fixture
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


MISSING_MODEL = "py:/nonexistent/model.py:build"  # would fail if anything got as far as loading it


# -- item 2: train --name stays inside --out ------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "ABSOLUTE", "a/b", ".hidden", "x" * 300])
def test_train_name_cannot_leave_out(tmp_path, capsys, name):
    name = str(tmp_path / "abs-escape") if name == "ABSOLUTE" else name
    out = tmp_path / "models"
    line = err_of(capsys, "train", "--model", "r3d", "--name", name, "--out", str(out), "--cache-dir",
                  str(tmp_path / "cache"), "--train-size", "1", "--val-size", "1", "--epochs", "1",
                  "--frames", "4", "--size", "32", "--device", "cpu")
    assert "--name" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written anywhere, not even the cache


# -- item 5: a damaged style-cache entry is rebuilt with a warning --------------------------------


def test_damaged_style_cache_entry_is_rebuilt(tmp_path):
    from precompute.static_dynamic import StyleCache

    cache = StyleCache(tmp_path / "styles")
    clip = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    calls = []

    def make(c: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.ascontiguousarray(c[:, ::-1])

    first = cache.get(clip, "palette", make)
    [path] = list((tmp_path / "styles").rglob("*.npz"))
    good = path.read_bytes()
    for damage in (good[: len(good) // 2], b"PK\x03\x04" + b"\0" * 64, b"not an npz at all"):
        path.write_bytes(damage)  # a truncated zip raises BadZipFile, which nothing caught
        with pytest.warns(UserWarning, match="style cache") as rec:
            again = cache.get(clip, "palette", make)
        mine = [r for r in rec if r.category is UserWarning]
        assert len(mine) == 1 and str(path) in str(mine[0].message)
        np.testing.assert_array_equal(again, first)
        with np.load(path, allow_pickle=False) as z:  # rewritten whole
            np.testing.assert_array_equal(z["clip"], first)
    assert len(calls) == 4


# -- item 8: bad input that gave a traceback -------------------------------------------------------


def test_decompression_bomb_in_a_folder_is_skipped(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (10, 10)).save(folder / "ok.png")
    Image.new("RGB", (80, 80)).save(folder / "over.png")  # 6400 pixels: over the limit (PIL warns)
    Image.new("RGB", (120, 120)).save(folder / "bomb.png")  # 14400: over twice the limit (PIL raises)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.warns(UserWarning, match="skipping") as rec:
        items = image_folder(folder)
    assert [i.id for i in items] == ["ok"]
    assert len(rec) == 2 and all("decompression bomb" in str(r.message) for r in rec)
    for name in ("over.png", "bomb.png"):
        with pytest.raises(DataError, match="MAX_IMAGE_PIXELS"):
            load_image(folder / name)


@pytest.mark.parametrize("source", ["synthetic:motion:0", "synthetic:motion:100000000"])
def test_synthetic_clip_counts_are_bounded(tmp_path, capsys, video_py, source):
    line = err_of(capsys, "predict", "--model", video_py, "--videos", source, "--out", str(tmp_path / "o"),
                  "--device", "cpu")
    assert "synthetic" in line and not (tmp_path / "o").exists()


@pytest.mark.parametrize(("flag", "value"), [("--seed", "-1"), ("--seed", str(2**32)), ("--run-id", "r" * 300),
                                             ("--run-id", "../up"), ("--layers", ","), ("--batch-size", "100000")])
def test_common_flags_are_checked_before_any_work(tmp_path, capsys, flag, value):
    line = err_of(capsys, "predict", "--model", MISSING_MODEL, flag, value, "--out", str(tmp_path / "o"))
    assert flag in line and "nonexistent" not in line


@pytest.mark.parametrize("lr", ["nan", "inf", "0", "-0.1"])
def test_train_learning_rate_must_be_positive_and_finite(tmp_path, capsys, lr):
    line = err_of(capsys, "train", "--model", "r3d", "--lr", lr, "--out", str(tmp_path / "m"), "--cache-dir",
                  str(tmp_path / "c"), "--train-size", "1", "--val-size", "1", "--epochs", "1", "--frames", "4",
                  "--size", "32", "--device", "cpu")
    assert "--lr" in line and not (tmp_path / "m").exists()


def test_train_seed_and_data_seed_ranges(tmp_path, capsys):
    for flag in ("--seed", "--data-seed"):
        line = err_of(capsys, "train", "--model", "r3d", flag, "-1", "--out", str(tmp_path / "m"))
        assert flag in line


def test_out_that_is_a_file(tmp_path, capsys, image_py, photo):
    out = tmp_path / "taken"
    out.write_text("a file")
    line = err_of(capsys, "predict", "--model", image_py, "--images", str(photo), "--out", str(out))
    assert "--out" in line and str(out) in line
    line = err_of(capsys, "predict", "--model", image_py, "--images", str(photo), "--out", str(out / "below"))
    assert "--out" in line


def test_model_returning_a_tuple_takes_its_first_tensor(tmp_path, capsys, photo):
    spec = f"py:{write(tmp_path / 'tuple_model.py', TUPLE_MODEL)}:build"
    argv = ["predict", "--model", spec, "--images", str(photo), str(photo), "--batch-size", "1", "--out",
            str(tmp_path / "o"), "--layers", "conv", "--device", "cpu"]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if "first tensor" in ln]
    assert len(notes) == 1, err  # said once, not once per batch


def test_model_that_fails_on_its_declared_input_is_refused_before_any_work(tmp_path, capsys, image_py):
    line = err_of(capsys, "predict", "--model", f"{image_py}#input=video,frames=4", "--videos", "synthetic:motion:2",
                  "--out", str(tmp_path / "o"), "--device", "cpu")
    assert "forward pass" in line and "(1, 3, 4, 32, 32)" in line and not (tmp_path / "o").exists()


def test_model_returning_no_tensor_is_refused(tmp_path, capsys, photo):
    spec = f"py:{write(tmp_path / 'tuple_model.py', TUPLE_MODEL)}:nothing"
    line = err_of(capsys, "predict", "--model", spec, "--images", str(photo), "--out", str(tmp_path / "o"),
                  "--layers", "conv", "--device", "cpu")
    assert "tensor" in line and "tuple_model.py" in line
    bundle = resolve_model(spec)
    with pytest.raises(ModelSpecError, match="no tensor"):
        bundle(torch.zeros(1, 3, 32, 32))


@pytest.fixture
def r3d_ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    meta = {"architecture": "r3d", "kwargs": {"num_classes": 9},
            "preprocessing": {"input": "video", "size": 32, "frames": 4}}
    zoo.save_checkpoint(zoo.build("r3d", {"num_classes": 9}), tmp_path / "ck", meta)
    return tmp_path / "ck"


def test_corrupt_checkpoint_weights(capsys, r3d_ckpt):
    (r3d_ckpt / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    line = err_of(capsys, "layers", "--model", f"ckpt:{r3d_ckpt}")
    assert str(r3d_ckpt) in line


def test_checkpoint_kwargs_that_disagree_with_the_weights(capsys, r3d_ckpt):
    meta = json.loads((r3d_ckpt / "model.json").read_text())
    meta["kwargs"] = {"num_classes": 5}
    (r3d_ckpt / "model.json").write_text(json.dumps(meta))
    line = err_of(capsys, "layers", "--model", f"ckpt:{r3d_ckpt}")
    assert str(r3d_ckpt) in line and "fc.bias is (9,) in the file but (5,) in the model" in line
    assert "1 more" in line  # fc.weight too
    meta["kwargs"] = {"num_classes": 9, "widths": [16, 32, 64]}  # the constructor itself fails
    (r3d_ckpt / "model.json").write_text(json.dumps(meta))
    assert "r3d" in err_of(capsys, "layers", "--model", f"ckpt:{r3d_ckpt}")


@pytest.mark.parametrize("opts", ["size=0", "size=", "size=0x32", "frames=0", "size=100000", "std=0/0/0",
                                  "std=1/nan/1", "mean=inf/0/0", "grid=0x4", "prefix=-1"])
def test_bad_spec_options(image_py, opts):
    with pytest.raises(ModelSpecError, match=opts.split("=")[0]):
        resolve_model(f"{image_py}#{opts}")


def test_bad_spec_option_from_the_cli(capsys, image_py):
    assert "size" in err_of(capsys, "layers", "--model", f"{image_py}#size=0")


def test_hf_folder_with_pickled_weights_is_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    folder = tmp_path / "hf"
    transformers.ViTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=2, intermediate_size=64).save_pretrained(folder)
    torch.save({"vit.embeddings.cls_token": torch.zeros(1, 1, 32)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelSpecError, match="only safetensors") as err:
        resolve_model(f"hf:{folder}")
    assert "pytorch_model.bin" in str(err.value) and "convert" in str(err.value)


def test_rosetta_grid_must_be_positive(tmp_path, capsys):
    line = err_of(capsys, "rosetta", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--grid", "0", "0", "0",
                  "--out", str(tmp_path))
    assert "--grid" in line


@pytest.mark.parametrize(("text", "key"), [("batch_size: 2.5", "batch_size"), ("seed: [1, 2]", "seed"),
                                           ("overwrite: 'yes'", "overwrite"), ("layers: {a: 1}", "layers"),
                                           ("images: [[a]]", "images"), ("clips_per_video: true", "clips_per_video")])
def test_config_values_of_the_wrong_type(tmp_path, capsys, text, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {MISSING_MODEL}\n{text}\n")
    line = err_of(capsys, "predict", "--config", str(cfg), "--out", str(tmp_path / "o"))
    assert key in line and str(cfg) in line and "nonexistent" not in line


def test_config_choices_are_checked(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": MISSING_MODEL, "features": "bogus"}))
    line = err_of(capsys, "vtcd", "--config", str(cfg))
    assert "features" in line and "bogus" in line and "nonexistent" not in line


# -- item 9 ------------------------------------------------------------------------------------------


def test_config_string_for_a_list_option_is_one_item(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: efficientnet_lite0\nimages: /data/cats\nlayers: blocks.1,blocks.2\n")
    args = cli.parse_args(["predict", "--config", str(cfg)])
    assert args.images == ["/data/cats"] and args.layers == ["blocks.1", "blocks.2"]
    cfg.write_text("model: r3d-motion\nremoval_fractions: 0.5\nlambda: 0.25\nseed: '7'\n")
    args = cli.parse_args(["static-dynamic", "--config", str(cfg)])
    assert args.model == ["r3d-motion"] and args.removal_fractions == [0.5] and args.lam == 0.25
    assert args.seed == 7
    cfg.write_text("model: r3d-motion\npairs:\n")  # a key without a value leaves the default
    assert cli.parse_args(["static-dynamic", "--config", str(cfg)]).pairs == 200


@pytest.mark.parametrize(("flag", "value"), [("--lambda", "nan"), ("--lambda", "2"), ("--examples", "-2"),
                                             ("--pairs", "10000000"), ("--clips-per-video", "0"),
                                             ("--removal-layers", ","), ("--layers", ",")])
def test_static_dynamic_numbers_are_checked_first(tmp_path, capsys, flag, value):
    line = err_of(capsys, "static-dynamic", "--model", MISSING_MODEL, flag, value, "--out", str(tmp_path / "o"))
    assert flag in line and "nonexistent" not in line


def test_config_key_inside_a_config_file(tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("batch_size: 4\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {MISSING_MODEL}\nconfig: {other}\n")
    line = err_of(capsys, "predict", "--config", str(cfg))
    assert "config" in line and str(cfg) in line and "nonexistent" not in line


def test_train_counts_have_upper_bounds(tmp_path, capsys):
    line = err_of(capsys, "train", "--model", "r3d", "--train-size", "100000000000", "--out", str(tmp_path / "m"),
                  "--cache-dir", str(tmp_path / "c"))
    assert "--train-size" in line and not (tmp_path / "c").exists()


# -- item 10: a user's video model ---------------------------------------------------------------

CONV3D_NO_SPEC = '''
from torch import nn
def build():
    return nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                         nn.Linear(4, 3))
'''

AMBIGUOUS = '''
import torch
from torch import nn
class Odd(nn.Module):
    """Takes a (B, 7) feature vector: neither an image nor a clip."""
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(7, 3)
    def forward(self, x):
        return self.body(x)
def build():
    return Odd()
'''


def test_static_dynamic_accepts_a_conv3d_model_without_model_spec(tmp_path):
    spec = f"py:{write(tmp_path / 'my_model.py', CONV3D_NO_SPEC)}:build#size=32,frames=4"
    out = tmp_path / "o"
    argv = ["static-dynamic", "--model", spec, "--videos", "synthetic:motion:4", "--pairs", "2", "--examples", "0",
            "--styles", "palette", "texture", "--cache-dir", "", "--layers", "0", "--out", str(out),
            "--device", "cpu"]
    assert cli.main(argv) == 0
    from core.artifacts import list_runs

    [entry] = list_runs(out)
    assert entry.run.manifest["model"]["preprocessing"]["input"] == "video"


def test_ambiguous_model_error_says_how_to_declare(tmp_path, capsys):
    spec = f"py:{write(tmp_path / 'odd.py', AMBIGUOUS)}:build"
    line = err_of(capsys, "static-dynamic", "--model", spec, "--layers", "body", "--out", str(tmp_path / "o"),
                  "--device", "cpu")
    assert "#input=video" in line and "MODEL_SPEC" in line


def test_a_full_disk_outside_the_run_writer_is_one_line(monkeypatch, capsys):
    """ENOSPC from anywhere in a job (a model cache, a scratch file) is one line and exit 2."""
    import errno

    from precompute import cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/x.bin")

    monkeypatch.setitem(cli.COMMANDS, "runs", full)
    assert cli.main(["runs", "--root", "."]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: disk full while writing /cache/x.bin: free space and rerun the same command to resume"]
