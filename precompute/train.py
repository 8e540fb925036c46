"""`precompute train`: train a zoo video model on the synthetic benchmark, with per-epoch checkpoints.

Output, under ``--out`` (default ``artifacts/models``), folder ``<name>`` (default ``<arch>-<task>``)::

    <name>/model.json, model.safetensors     the final model (a checkpoint folder: `ckpt:<name>`)
    <name>/epochs/epoch-01/ ...              one checkpoint per epoch (+ optimizer state)
    <name>/train_log.json                    loss and accuracy per epoch

A killed job resumes from its last finished epoch (weights, optimizer state and the data order
are restored; the data order of each epoch derives from the seed and the epoch number).
Accuracy is measured on a held-out split generated from another seed stream; the final metrics
also give it on the same clips with their frames shuffled (``val_accuracy_shuffled``).

``--static-dropout RATE`` trains with StaticDropout (``--dropout-kind static``, dissertation 3.5.2;
:mod:`core.static_dynamic.static_dropout`) or standard dropout (``--dropout-kind standard``) at
that rate on the input of the classifier ``fc``, on top of the architecture's own dropout.
``--finetune-epochs K`` then trains K more epochs without it at a small constant learning rate
(``--finetune-lr``, default 1e-5, as in the dissertation), after the one-cycle schedule of the
main epochs has ended; they are numbered on from the main epochs (checkpoints included).
StaticDropout's random draws are reseeded from the seed and the epoch number at every epoch, so
a resumed run repeats them.

Recipe options for small video transformers (each off by default; the defaults train as before):
``--schedule cosine`` (linear warm-up over ``--warmup-epochs``, then cosine decay to 0, instead of
the one-cycle schedule), ``--label-smoothing``, ``--train-augment shift`` (every clip shifted by up
to 1/8 of its side, wrapping round, and its brightness and contrast jittered; the same for all its
frames, so no label changes), ``--distill-from SPEC`` (a trained checkpoint of the same classes whose
logits, softened by ``--distill-temperature``, the student also matches with weight
``--distill-weight``: loss ``(1 - w) CE + w T^2 KL``), and ``--curriculum-epochs K
--curriculum-classes C`` (the first K epochs draw their clips only from classes ``0 .. C-1``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.data import synthetic
from core.data.videos import normalise_clip
from core.errors import UserError
from core.models import Preprocessing, video_zoo, zoo
from core.models.checkpoints import OPTIMIZER_JSON, OPTIMIZER_WEIGHTS, load_optimizer, save_optimizer
from core.static_dynamic.static_dropout import StaticDropout
from precompute.common import check_folder_name, check_memory, progress, resolve_device, seed_everything

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)
NORMALISATION = Preprocessing("video", 64, MEAN, STD, frames=16)  # only mean and std are used here


def machine() -> str:
    """Where training ran, for the checkpoint's metadata and the zoo table."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def to_input(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> normalised float ``(B, 3, T, H, W)`` on ``device``."""
    return normalise_clip(frames, NORMALISATION, device)


def load_split(config: synthetic.SyntheticConfig, n: int, split: str, with_flow: bool,
               cache_dir: Path) -> dict[str, np.ndarray]:
    """The split's frames and labels (cached on disk), plus colour-wheel flow for two-stream models."""
    data = synthetic.cached_split(config, n, split, cache_dir)
    if with_flow:
        from core.data.flow import flow_to_rgb, optical_flow

        key = synthetic.cache_path(config, n, split, cache_dir).stem
        path = cache_dir / f"flow-{key}.npz"
        flow = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    flow = z["flow"]
                if flow.shape != data["frames"].shape:
                    raise ValueError(f"shape {flow.shape} does not match the clips")
            except Exception as e:  # a damaged cache is rebuilt, whatever the damage
                warnings.warn(f"regenerating the flow cache {path}: {e}", stacklevel=2)
                flow = None
        if flow is not None:
            data["flow"] = flow
        else:
            data["flow"] = np.stack([flow_to_rgb(optical_flow(v))
                                     for v in progress(data["frames"], f"flow {split}", len(data["frames"]))])
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npz")
            np.savez(tmp, flow=data["flow"])
            os.replace(tmp, path)
    return data


def batch_input(data: dict[str, np.ndarray], idx: np.ndarray, device: torch.device) -> Any:
    x = to_input(data["frames"][idx], device)
    if "flow" in data:
        return x, to_input(data["flow"][idx], device)
    return x


def call(model: torch.nn.Module, x: Any) -> torch.Tensor:
    return model(*x) if isinstance(x, tuple) else model(x)


def shuffled_orders(n: int, frames: int, seed: int) -> np.ndarray:
    """``(n, frames)``: for each clip a random frame order that is not the identity (fixed by ``seed``)."""
    if frames < 2:
        raise ValueError(f"cannot shuffle {frames} frame(s): need at least 2")
    rng = np.random.default_rng(seed)
    orders = np.empty((n, frames), dtype=np.int64)
    for i in range(n):
        orders[i] = rng.permutation(frames)
        while (orders[i] == np.arange(frames)).all():
            orders[i] = rng.permutation(frames)
    return orders


@torch.inference_mode()
def evaluate(model: torch.nn.Module, data: dict[str, np.ndarray], device: torch.device,
             batch_size: int = 32, shuffle_seed: int | None = None) -> dict[str, Any]:
    """Top-1 accuracy, mean loss and per-class accuracy on ``data``.

    With ``shuffle_seed`` every clip's frames (and its flow frames, if any, in the same order) are
    shuffled first, each clip in its own order given by :func:`shuffled_orders`.
    """
    model.eval()
    preds, losses = [], []
    labels = torch.from_numpy(data["labels"]).long()
    if shuffle_seed is not None:
        rows = np.arange(len(labels))[:, None]
        orders = shuffled_orders(len(labels), data["frames"].shape[1], shuffle_seed)
        data = {**data, **{k: data[k][rows, orders] for k in ("frames", "flow") if k in data}}
    for start in range(0, len(labels), batch_size):
        idx = np.arange(start, min(start + batch_size, len(labels)))
        logits = call(model, batch_input(data, idx, device)).float().cpu()
        losses.append(F.cross_entropy(logits, labels[idx], reduction="sum").item())
        preds.append(logits.argmax(-1))
    pred = torch.cat(preds)
    correct = (pred == labels).numpy()
    per_class = [float(correct[data["labels"] == c].mean()) if (data["labels"] == c).any() else None
                 for c in range(int(data["labels"].max()) + 1)]
    return {"accuracy": float(correct.mean()), "loss": sum(losses) / len(labels), "per_class": per_class}


def initialise_from(model: torch.nn.Module, spec: str) -> int:
    """Copy into ``model`` every tensor of the checkpoint ``spec`` whose name (as is, or under
    ``patch_embed.``: the transformer's hybrid stem has the names of R3D's first stages) and shape
    match; returns how many were copied. The classifier is never copied."""
    from core.models import resolve_model

    source = resolve_model(spec).model.state_dict()
    target = model.state_dict()
    copied = 0
    for name, tensor in source.items():
        if name.startswith("fc."):
            continue
        for key in (name, f"patch_embed.{name}"):
            if key in target and target[key].shape == tensor.shape:
                target[key] = tensor.to(target[key].dtype)
                copied += 1
                break
    if copied == 0:
        raise UserError(f"--init-from {spec}: no tensor of it matches the model by name and shape")
    model.load_state_dict(target)
    print(f"initialised {copied} tensors from {spec}", flush=True)
    return copied


def lr_factor(step: int, total: int, warmup: int) -> float:
    """The cosine schedule's multiplier of the peak learning rate at ``step`` (0-based) of ``total``:
    linear warm-up over ``warmup`` steps, then cosine decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + float(np.cos(np.pi * min(1.0, progress_))))


def augment(x: torch.Tensor, seed: Any) -> torch.Tensor:
    """Label-preserving augmentation of normalised clips ``(B, 3, T, H, W)``: each clip shifted by up
    to ``H/8`` pixels (wrapping round) and its brightness and contrast jittered by up to 20%, the same
    for all its frames (directions, identities and timing are kept). Deterministic given ``seed``."""
    g = torch.Generator().manual_seed(int(np.random.default_rng(seed).integers(2**62)))
    b, _, _, h, _ = x.shape
    limit = max(1, h // 8)
    shifts = torch.randint(-limit, limit + 1, (b, 2), generator=g)
    gain = 1.0 + 0.2 * (2 * torch.rand(b, generator=g) - 1)
    bias = 0.2 * (2 * torch.rand(b, generator=g) - 1)
    out = torch.stack([torch.roll(x[i], (int(shifts[i, 0]), int(shifts[i, 1])), dims=(2, 3)) for i in range(b)])
    return out * gain.view(b, 1, 1, 1, 1).to(x) + bias.view(b, 1, 1, 1, 1).to(x)


def load_teacher(spec: str, classes: list[str], frames: int, size: int, device: torch.device) -> torch.nn.Module:
    """The ``--distill-from`` model, in eval mode: a video-input checkpoint with the same classes,
    frames and frame size as the student."""
    from core.models import resolve_model

    bundle = resolve_model(spec)
    meta_classes = list(bundle.class_names or [])
    if meta_classes != classes:
        raise UserError(f"--distill-from {spec}: its classes {meta_classes} are not the task's {classes}; "
                        "distil from a model of the same task")
    pre = bundle.preprocessing
    if pre.input != "video" or tuple(pre.size) != (size, size) or (pre.frames or frames) != frames:
        raise UserError(f"--distill-from {spec}: it takes {pre.input} of {pre.frames} frames at {pre.size}, "
                        f"not {frames} frames at {size}x{size}; distil from a zoo model of these settings")
    model = bundle.model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, mean over the batch."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                    reduction="batchmean") * t * t


def _same_settings(folder: Path, settings: dict[str, Any]) -> bool:
    """Whether the epoch checkpoint in ``folder`` was written by a run with these settings."""
    try:
        saved = json.loads((folder / OPTIMIZER_JSON).read_text()).get("extra", {}).get("settings")
    except (OSError, ValueError):
        return False
    return saved == json.loads(json.dumps(settings))


def _epoch_dir(out: Path, epoch: int) -> Path:
    return out / "epochs" / f"epoch-{epoch:02d}"


def _last_epoch(out: Path) -> int:
    done = [int(p.name.split("-")[1]) for p in (out / "epochs").glob("epoch-*")
            if (p / zoo.CHECKPOINT_JSON).is_file() and (p / OPTIMIZER_JSON).is_file()]
    return max(done, default=0)


def run(args: Any) -> Path:
    arch = args.model
    if arch not in video_zoo.ARCHS:
        raise UserError(f"unknown zoo model {arch!r}; train one of: {', '.join(video_zoo.ARCHS)}")
    device = resolve_device(args.device)
    seed_everything(args.seed)
    rate = float(args.static_dropout)
    kind = args.dropout_kind if rate > 0 else "none"
    finetune_epochs = int(args.finetune_epochs)
    finetune_lr = float(args.finetune_lr)
    if not 0.0 <= rate < 1.0:
        raise UserError(f"--static-dropout must be in [0, 1), got {rate}")
    if finetune_epochs < 0:
        raise UserError(f"--finetune-epochs must be at least 0, got {finetune_epochs}")
    every = int(args.static_dropout_every)
    if every < 1:
        raise UserError(f"--static-dropout-every must be at least 1, got {every}")
    if kind == "static" and args.frames < 2:
        raise UserError("StaticDropout shuffles frames: it needs --frames 2 or more")
    recipe = {"schedule": args.schedule, "warmup_epochs": float(args.warmup_epochs),
              "label_smoothing": float(args.label_smoothing), "train_augment": args.train_augment,
              "distill_from": args.distill_from, "distill_weight": float(args.distill_weight),
              "distill_temperature": float(args.distill_temperature),
              "curriculum_epochs": int(args.curriculum_epochs), "curriculum_classes": args.curriculum_classes}
    if not 0.0 <= recipe["label_smoothing"] < 1.0:
        raise UserError(f"--label-smoothing must be in [0, 1), got {recipe['label_smoothing']}")
    if not 0.0 <= recipe["distill_weight"] <= 1.0:
        raise UserError(f"--distill-weight must be in [0, 1], got {recipe['distill_weight']}")
    if recipe["distill_temperature"] <= 0:
        raise UserError(f"--distill-temperature must be above 0, got {recipe['distill_temperature']}")
    if recipe["warmup_epochs"] < 0:
        raise UserError(f"--warmup-epochs must be at least 0, got {recipe['warmup_epochs']}")
    embed_init = args.embed_init
    if embed_init != "random" and arch != "tubelet_vit":
        raise UserError(f"--embed-init works with tubelet_vit only, not {arch}")
    if recipe["train_augment"] != "none" and video_zoo.input_kind(arch) != "video":
        raise UserError(f"--train-augment works on video input only; {arch} also takes optical flow")
    if recipe["curriculum_epochs"] < 0:
        raise UserError(f"--curriculum-epochs must be at least 0, got {recipe['curriculum_epochs']}")
    if args.name is not None:
        check_folder_name(args.name, "--name")
    out = Path(args.out) / (args.name or f"{arch}-{args.task}")
    if (out / zoo.CHECKPOINT_JSON).is_file() or (args.overwrite and out.is_dir()):
        if not args.overwrite:
            raise UserError(f"{out} is already trained; pass --overwrite to train it again")
        shutil.rmtree(out)

    data_config = synthetic.SyntheticConfig(task=args.task, frames=args.frames, size=args.size,
                                            seed=args.data_seed)
    with_flow = video_zoo.input_kind(arch) == "video+flow"
    per_clip = args.frames * args.size**2 * (4 + 3 * with_flow)  # frames and masks (+ flow) in uint8
    check_memory((args.train_size + args.val_size) * per_clip,
                 f"{args.train_size} + {args.val_size} clips of {args.frames} frames at {args.size}x{args.size}",
                 "lower --train-size, --val-size, --frames or --size")
    classes = synthetic.class_names(args.task)
    n_first = args.curriculum_classes
    if recipe["curriculum_epochs"] and not (n_first is not None and 1 <= n_first < len(classes)):
        raise UserError(f"--curriculum-epochs needs --curriculum-classes from 1 to {len(classes) - 1} "
                        f"(the {args.task} task has {len(classes)} classes), got {n_first}")
    cache = Path(args.cache_dir)
    train_data = load_split(data_config, args.train_size, "train", with_flow, cache)
    val_data = load_split(data_config, args.val_size, "val", with_flow, cache)

    kwargs: dict[str, Any] = {"num_classes": len(classes)}
    if arch == "vit":
        kwargs.update(frames=args.frames, size=args.size, stem=args.vit_stem)
    elif arch == "tubelet_vit":
        kwargs.update(frames=args.frames, size=args.size)
    if embed_init != "random":
        kwargs["embed_init"] = embed_init
    model = zoo.build(arch, kwargs).to(device)
    init_from = args.init_from
    initialised = initialise_from(model, init_from) if init_from else 0
    regulariser = StaticDropout(model, kind, rate, every=every)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = -(-args.train_size // args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    schedule: torch.optim.lr_scheduler.LRScheduler
    if recipe["schedule"] == "cosine":
        warmup = round(recipe["warmup_epochs"] * steps_per_epoch)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(i, total_steps, warmup))
    else:
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=total_steps,
                                                       pct_start=0.15)
    teacher = (load_teacher(recipe["distill_from"], classes, args.frames, args.size, device)
               if recipe["distill_from"] and recipe["distill_weight"] > 0 else None)
    log: list[dict[str, Any]] = []
    start_epoch = _last_epoch(out) + 1
    seconds = 0.0
    settings = {"architecture": arch, "kwargs": kwargs, "task": args.task, "epochs": args.epochs, "lr": args.lr,
                "batch_size": args.batch_size, "weight_decay": args.weight_decay, "seed": args.seed,
                "train_size": args.train_size, "data": dataclasses.asdict(data_config), "init_from": init_from,
                "dropout": regulariser.settings(), "finetune_epochs": finetune_epochs}
    defaults = {"schedule": "onecycle", "warmup_epochs": 1.0, "label_smoothing": 0.0, "train_augment": "none",
                "distill_from": None, "distill_weight": 0.5, "distill_temperature": 2.0, "curriculum_epochs": 0,
                "curriculum_classes": None}
    if recipe != defaults:  # runs with the default recipe keep their old settings (and can resume)
        settings["recipe"] = recipe
    if start_epoch > 1:
        from safetensors.torch import load_file

        last = _epoch_dir(out, start_epoch - 1)
        extra = load_optimizer(optimizer, last) if _same_settings(last, settings) else None
        if extra is None:
            raise UserError(f"{out} holds an unfinished training run with other settings; pass --overwrite "
                            "to start over, or --name to train into another folder")
        model.load_state_dict(load_file(str(last / zoo.CHECKPOINT_WEIGHTS)))
        schedule.load_state_dict(extra["schedule"])
        log = extra["log"]
        seconds = extra["seconds"]
        print(f"resuming {out} after epoch {start_epoch - 1}", flush=True)

    n_params = sum(p.numel() for p in model.parameters())
    meta: dict[str, Any] = {
        "architecture": arch,
        "kwargs": kwargs,
        "preprocessing": {"input": video_zoo.input_kind(arch), "size": args.size, "frames": args.frames,
                          "mean": list(MEAN), "std": list(STD)},
        "classes": classes,
        "stages": video_zoo.stages(arch),
        "task": args.task,
        "description": f"zoo {arch} trained on the synthetic {args.task} task",
        "num_params": n_params,
    }
    if arch in video_zoo.TRANSFORMERS:
        meta.update(token_grid=list(model.grid), num_prefix_tokens=0,
                    heads=model.blocks[0].attn.heads)
    labels = torch.from_numpy(train_data["labels"]).long()
    last_epoch = args.epochs + finetune_epochs
    with regulariser:
        for epoch in range(start_epoch, last_epoch + 1):
            t0 = time.time()
            model.train()
            torch.manual_seed(args.seed * 100_003 + epoch)  # dropout draws: a resumed epoch repeats them
            finetune = epoch > args.epochs  # after the main epochs: no extra dropout, constant small lr
            regulariser.reset(args.seed * 100_003 + epoch)
            regulariser.active = not finetune
            if finetune:
                for group in optimizer.param_groups:
                    group["lr"] = finetune_lr
            order = np.random.default_rng([args.seed, epoch]).permutation(args.train_size)
            if epoch <= recipe["curriculum_epochs"]:  # as many steps, drawn from the first classes only
                subset = order[train_data["labels"][order] < n_first]
                order = np.resize(subset, args.train_size)
            total, correct, count = 0.0, 0, 0
            bar = progress(range(steps_per_epoch), f"{arch}-{args.task} epoch {epoch}/{last_epoch}"
                           + (" (fine-tune)" if finetune else ""), steps_per_epoch)
            for step in bar:
                idx = np.sort(order[step * args.batch_size:(step + 1) * args.batch_size])
                x = batch_input(train_data, idx, device)
                y = labels[idx].to(device)
                if recipe["train_augment"] == "shift":
                    x = augment(x, [args.seed, epoch, step])
                regulariser.step(x)
                logits = call(model, x)
                loss = F.cross_entropy(logits, y, label_smoothing=recipe["label_smoothing"])
                if teacher is not None:
                    with torch.no_grad():
                        soft = teacher(x[0] if isinstance(x, tuple) else x)
                    w = recipe["distill_weight"]
                    loss = (1 - w) * loss + w * distillation_loss(logits, soft, recipe["distill_temperature"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if not finetune:
                    schedule.step()
                total += loss.item() * len(idx)
                correct += int((logits.argmax(-1) == y).sum())
                count += len(idx)
            val = evaluate(model, val_data, device)
            seconds += time.time() - t0
            log.append({"epoch": epoch, "train_loss": total / count, "train_accuracy": correct / count,
                        "val_accuracy": val["accuracy"], "val_loss": val["loss"], "seconds": round(seconds, 1)})
            if finetune:
                log[-1]["finetune"] = True
            print(f"epoch {epoch}: train loss {total / count:.3f} acc {correct / count:.3f}, "
                  f"val acc {val['accuracy']:.3f}", flush=True)
            folder = _epoch_dir(out, epoch)
            save_optimizer(optimizer, folder, {"schedule": schedule.state_dict(), "log": log, "seconds": seconds,
                                               "settings": settings})
            epoch_meta = {**meta, "epoch": epoch, "metrics": {**log[-1], "val_per_class": val["per_class"]}}
            zoo.save_checkpoint(model, folder, epoch_meta,
                                dtype=torch.float16 if args.epoch_dtype == "float16" else None)

    final = evaluate(model, val_data, device)
    shuffled = evaluate(model, val_data, device, shuffle_seed=args.seed) if args.frames >= 2 else None
    meta.update(
        epoch=last_epoch,
        metrics={"val_accuracy": final["accuracy"], "val_loss": final["loss"], "val_per_class": final["per_class"],
                 "val_accuracy_shuffled": None if shuffled is None else shuffled["accuracy"],
                 "train_accuracy": log[-1]["train_accuracy"]},
        training={"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                  "weight_decay": args.weight_decay, "seed": args.seed, "train_size": args.train_size,
                  "val_size": args.val_size, "data": dataclasses.asdict(data_config), "seconds": round(seconds, 1),
                  "machine": machine(), "torch": torch.__version__,
                  "init_from": init_from, "initialised_tensors": initialised, "recipe": recipe,
                  "dropout": {**regulariser.settings(), "finetune_epochs": finetune_epochs,
                              "finetune_lr": finetune_lr if finetune_epochs else None}},
    )
    zoo.save_checkpoint(model, out, meta)
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    if not args.keep_optimizer:
        for folder in (out / "epochs").glob("epoch-*"):
            for name in (OPTIMIZER_JSON, OPTIMIZER_WEIGHTS):
                (folder / name).unlink(missing_ok=True)
    return out
