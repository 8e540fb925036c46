"""The predictions run layout lives in core.predictions_store: the job writes through it, pages name no file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from core import predictions_store as store
from core.artifacts import RunWriter, open_run

REPO = Path(__file__).resolve().parents[1]


def test_write_makes_a_run_the_schema_accepts(tmp_path) -> None:
    taken: set[str] = set()
    records = []
    for image_id in ("a/b", "a?b"):  # the same slug: the second name gets a suffix
        file = store.image_file(image_id, taken)
        taken.add(file)
        records.append({"id": image_id, "file": file, "source": "s", "label": None, "label_name": None,
                        "top": [{"index": 0, "name": "cat", "prob": 0.75}], "predicted": 0, "predicted_name": "cat",
                        "correct": None})
    assert len(taken) == 2 and all(f.startswith(f"{store.IMAGES}/") for f in taken)
    with RunWriter(tmp_path, store.KIND, model="m", data="d", config={}) as w:
        w.write_npz(store.part_file(0), x=np.zeros(1))
        store.write(w, model={"spec": "m"}, records=records, logits=np.zeros((2, 3), np.float32),
                    features={"conv": np.ones((2, 4), np.float32)}, shapes={"conv": [4, 2, 2]}, layers=["conv"],
                    thumbnails=[np.zeros((4, 4, 3), np.uint8)] * 2)
        path = w.finish({})
    run = open_run(path, verify=True)
    assert run.kind == store.KIND
    assert [r["id"] for r in run.load_json(store.PREDICTIONS)["images"]] == ["a/b", "a?b"]
    assert set(run.load_npz(store.FEATURES)) == {store.LOGITS, "conv"}
    assert run.load_json(store.LAYERS) == [{"layer": "conv", "shape": [4, 2, 2]}]
    assert all(run.load_image(f).shape == (4, 4, 3) for f in taken)
    assert not any(n.startswith(f"{store.PARTS}/") for n in run.files())


def test_pages_and_the_predict_job_name_no_run_file() -> None:
    literal = re.compile(r'"[a-z_/-]+\.(json|npz|mp4|webp|png)"')
    found = [f"{p.name}:{i}" for p in sorted((REPO / "pages").glob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if any(m.group(0) != '"manifest.json"' for m in literal.finditer(line))]
    job = (REPO / "precompute" / "predict.py").read_text().splitlines()
    found += [f"predict.py:{i}" for i, line in enumerate(job, 1)
              if literal.search(line) or '"images/' in line or '"parts/' in line]
    assert found == []
