"""Hostile copies of runs for tests: script, HTML and markdown in the names a run carries (layers, classes,
warnings), with the manifest's hashes fixed so the reader accepts them."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

EVIL = "evil.example"
HOSTILE = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>",
           f"![x](http://{EVIL}/x.png)", f"<img src=http://{EVIL}/y.png onerror=alert(2)>"]
WARNINGS = [
    {"code": "hostile_run", "message": f"{HOSTILE[2]} {HOSTILE[0]}", "setting": "`--x` </script>", "layer": None,
     "figure": None},
    {"code": "hostile_layer", "message": HOSTILE[1], "setting": None, "layer": HOSTILE[3], "figure": "graph"}]


def rehash(run: Path) -> None:
    """Rewrite the sha256 and size of every file listed in ``run``'s manifest."""
    manifest = json.loads((run / "manifest.json").read_text())
    for name, entry in manifest["files"].items():
        data = (run / name).read_bytes()
        entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1))


def poison_graph(path: Path) -> None:
    g = json.loads(path.read_text())
    names = {old: HOSTILE[i % len(HOSTILE)] + f" {i}" for i, old in enumerate(g["layers"])}
    g["layers"] = [names[x] for x in g["layers"]]
    for n in g["nodes"]:
        if n.get("kind") == "class":
            n["label"] = HOSTILE[3]
        else:
            n["layer"] = names[n["layer"]]
    path.write_text(json.dumps(g))


def hostile_copy(src: Path, dest: Path) -> Path:
    """A copy of the vcc or vcc-debug run ``src`` at ``dest`` with hostile layer names, class names and
    warnings (:data:`WARNINGS`), hashes fixed."""
    shutil.copytree(src, dest)
    for g in dest.rglob("graph.json"):
        poison_graph(g)
    if (dest / "classes.json").is_file():
        classes = json.loads((dest / "classes.json").read_text())
        for c in classes:
            c["class_name"] = HOSTILE[2] + " " + HOSTILE[0]
        (dest / "classes.json").write_text(json.dumps(classes))
    if (dest / "debug.json").is_file():
        debug = json.loads((dest / "debug.json").read_text())
        for im in debug["images"]:
            im["true_name"], im["predicted_name"] = HOSTILE[0], HOSTILE[2]
        (dest / "debug.json").write_text(json.dumps(debug))
    rehash(dest)
    manifest = json.loads((dest / "manifest.json").read_text())
    manifest["warnings"] = WARNINGS
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return dest
