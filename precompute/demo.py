"""`precompute demo`: regenerate every shipped demo run (on CPU, from scratch).

Each analysis adds its demo runs here, as the command lines that make them (``precompute demo``
runs them in order; this module imports no job, so it and ``precompute.cli`` do not import each
other). Demo runs have fixed run ids and replace the previous ones, so regenerating keeps
``assets/demo`` at one run per demo.
"""

from __future__ import annotations

from pathlib import Path

from core.models.resolve import ASSETS_MODELS

ZOO = ("c2d", "r3d", "slowfast", "two_stream", "vit")
SYNTHETIC_CLIPS = "synthetic:motion:24"  # held-out clips of the motion task (the test split)
OCCLUSION_CLIPS = "synthetic:occlusion:24"  # held-out clips of the occlusion task


def commands(out: Path, device: str = "auto") -> list[list[str]]:
    """The command lines (``python -m precompute`` arguments) of every demo run under ``out``, in order."""
    def predictions(model: str, run_id: str, batch_size: int, *data: str) -> list[str]:
        return ["predict", "--model", model, *data, "--batch-size", str(batch_size), "--out", str(out),
                "--device", device, "--run-id", run_id, "--overwrite"]

    argvs = [predictions("efficientnet_lite0", "efficientnet_lite0-photos", 8, "--images", "demo")]
    for model in ("r3d-motion", "c2d-motion"):  # the zoo on held-out synthetic clips: C2D cannot see direction
        if (ASSETS_MODELS / model / "model.json").is_file():
            argvs.append(predictions(model, f"{model}-synthetic", 16, "--videos", "synthetic:motion:45"))
    argvs.extend(static_dynamic_runs(out, device))
    argvs.extend(vtcd_runs(out, device))
    argvs.extend(vcc_runs(out, device))
    return argvs


def vtcd_runs(out: Path, device: str = "auto", which: str = "all") -> list[list[str]]:
    """VTCD of the motion-task transformer on the real street clips (label-free: agreement with the
    unmasked prediction), and of both zoo transformers on the same held-out synthetic clips (with
    their ground-truth object masks) with the Rosetta concepts the two share; and the plain-tubelet
    transformers (:func:`tubelet_runs`). ``which``: ``all``, ``real``, ``synthetic`` (the two synthetic runs
    and their Rosetta run) or ``tubelet``."""
    has_vit = (ASSETS_MODELS / "vit-motion" / "model.json").is_file()
    # 4000 masks per clip for concepts (the dissertation's K); 1000 for the 16 heads, whose importance
    # settles with far fewer masks, keep each run under an hour on 2 CPU cores.
    common = ["--media-videos", "2", "--media-concepts", "60", "--head-masks", "1000", "--out", str(out),
              "--overwrite", "--device", device]
    argvs = []
    if which in ("all", "real") and has_vit:
        argvs.append(["vtcd", "--model", "vit-motion", "--videos", "demo", "--clips-per-video", "16",
                      "--run-id", "vit-motion-real", *common])
    if which in ("all", "synthetic") and has_vit:
        synthetic = []
        for model in ("vit-motion", "vit-appearance"):
            if (ASSETS_MODELS / model / "model.json").is_file():
                argvs.append(["vtcd", "--model", model, "--videos", SYNTHETIC_CLIPS, "--ground-truth",
                              "--run-id", f"{model}-synthetic", *common])
                synthetic.append(str(Path(out) / "vtcd" / f"{model}-synthetic"))
        if len(synthetic) == 2:
            argvs.append(["rosetta", "--runs", *synthetic, "--out", str(out), "--run-id",
                          "vit-motion-vs-appearance", "--overwrite"])
    if which in ("all", "tubelet"):
        argvs.extend(tubelet_runs(out, common))
    return argvs


def tubelet_runs(out: Path, common: list[str]) -> list[list[str]]:
    """The plain-tubelet transformers (issue 16), once both checkpoints ship: the motion model on its task's
    clips; the occlusion model on occlusion clips, scored against the target and the occluder; the motion
    model on the same occlusion clips (label-free), and the Rosetta concepts the two share there."""
    motion, occlusion = "tubelet_vit-motion", "tubelet_vit-occlusion"
    if not all((ASSETS_MODELS / m / "model.json").is_file() for m in (motion, occlusion)):
        return []
    pair = [str(Path(out) / "vtcd" / f"{occlusion}-synthetic"), str(Path(out) / "vtcd" / f"{motion}-on-occlusion")]
    return [
        ["vtcd", "--model", motion, "--videos", SYNTHETIC_CLIPS, "--ground-truth", "--run-id", f"{motion}-synthetic",
         *common],
        ["vtcd", "--model", occlusion, "--videos", OCCLUSION_CLIPS, "--ground-truth", "--run-id",
         f"{occlusion}-synthetic", *common],
        ["vtcd", "--model", motion, "--videos", OCCLUSION_CLIPS, "--ground-truth", "--target", "prediction",
         "--run-id", f"{motion}-on-occlusion", *common],
        ["rosetta", "--runs", *pair, "--out", str(out), "--run-id", "tubelet_vit-motion-vs-occlusion", "--overwrite"],
    ]


def vcc_runs(out: Path, device: str = "auto") -> list[list[str]]:
    """VCCs of EfficientNet-Lite0 for three classes that have a real photo each (each class set is
    that photo plus crops and flips of it, recorded as augmented copies in the data spec) and for
    "drilling platform", which has no photo: its images are the crops the model predicts as it (recorded
    as such). Then the failure debugger on the misclassified images: the rocket photo, predicted drilling
    platform, gets the VCCs of both classes."""
    run = ["vcc", "--model", "efficientnet_lite0", "--images", "demo", "--classes", "missile", "Egyptian cat",
           "espresso", "drilling platform", "--augment", "20", "--from-predictions", "600", "--n-images", "20",
           "--random", "demo", "--random-augment", "100", "--n-random-sets", "10", "--random-set-size", "20",
           "--layers", "blocks.3", "blocks.4", "blocks.5", "conv_head", "--n-concepts", "10",
           "--out", str(out), "--run-id", "efficientnet_lite0-photos", "--overwrite", "--device", device]
    debug = ["vcc-debug", "--model", "efficientnet_lite0", "--runs", "efficientnet_lite0-photos", "--out",
             str(out), "--run-id", "efficientnet_lite0-mistakes", "--overwrite", "--device", device]
    return [run, debug]


def static_dynamic_runs(out: Path, device: str = "auto", which: str = "all") -> list[list[str]]:
    """The static/dynamic demos: the whole zoo on the same synthetic pairs (with removal curves for the
    motion models), r3d-motion's training dynamics, and the motion models on real street footage.
    ``which`` (``all``, ``zoo``, ``training``, ``real``) regenerates one of them."""
    def shipped(task: str) -> list[str]:
        return [f"{a}-{task}" for a in ZOO if (ASSETS_MODELS / f"{a}-{task}" / "model.json").is_file()]

    def analyse(models: list[str], run_id: str, videos: str, *flags: str) -> list[str]:
        return ["static-dynamic", "--model", *models, "--videos", videos, "--run-id", run_id, "--out", str(out),
                "--overwrite", "--device", device, *flags]

    motion, appearance = shipped("motion"), shipped("appearance")
    argvs = []
    if which in ("all", "training") and (ASSETS_MODELS / "r3d-motion" / "epochs").is_dir():
        argvs.append(analyse(["r3d-motion"], "r3d-motion-training", "synthetic:motion:100", "--examples", "0",
                             "--pairs", "100", "--checkpoints", str(ASSETS_MODELS / "r3d-motion")))
    if which in ("all", "real") and motion:
        argvs.append(analyse(motion, "zoo-real-clips", "demo", "--clips-per-video", "16", "--pairs", "100"))
    if which in ("all", "zoo") and motion:
        argvs.append(analyse(motion + appearance, "zoo-synthetic", "synthetic:motion:100", "--removal",
                             "--removal-fractions", "0", "0.1", "0.2", "0.3", "0.5", "0.7", "1",
                             "--removal-layers", "layer3", "slow.layer3", "fast.layer3", "fusion", "blocks.3"))
    return argvs
