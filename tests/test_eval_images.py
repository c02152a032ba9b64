"""`clinrag eval images`: the cross-modal harness on known embeddings, the sample table and covid-cxr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open_clip")
from _tiny_clip import TINY_ARCH, save_tiny_open_clip  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from clinrag.data.schema import ImageRecord  # noqa: E402
from clinrag.eval.images import Pairs, load_pairs, score_pairs  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "cxr"
COVID = next((p for p in (Path("/work/shared/data/covid-cxr"),
                          Path(__file__).resolve().parents[2] / "shared" / "data" / "covid-cxr")
              if (p / "metadata.csv").exists()), None)


def _pairs() -> Pairs:
    images = [ImageRecord(id=f"i{n}", path=f"/x{n}.png") for n in range(4)]
    # images 0 and 1 share one note text; labels: a, a, b, b
    return Pairs(images, ["t0", "t1", "t2"], [0, 0, 1, 2], [("a", "ct"), ("a", "ct"), ("b", "ct"), ("b", "ct")])


def test_perfect_embeddings_score_one_and_chance_is_analytic():
    pairs = _pairs()
    txt = np.eye(3, dtype=np.float32)
    img = txt[pairs.text_of]
    metrics, chance = score_pairs(pairs, img, txt)
    assert metrics["i2t_recall@1"] == 1.0 and metrics["t2i_recall@1"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics["t2i_recall@5"] == 1.0
    assert chance["i2t_recall@1"] == pytest.approx(1 / 3) and chance["t2i_recall@1"] == pytest.approx(1 / 4)
    assert chance["i2t_recall@10"] == 1.0
    # finding level: image 0's relevant texts are t0 (label a); image 2's are t1 and t2 (label b)
    assert metrics["i2t_finding_precision@1"] == 1.0
    assert chance["i2t_finding_precision@1"] == pytest.approx((1 / 3 + 1 / 3 + 2 / 3 + 2 / 3) / 4)


def test_reversed_embeddings_score_zero():
    pairs = _pairs()
    txt = np.eye(3, dtype=np.float32)
    metrics, _ = score_pairs(pairs, -txt[pairs.text_of], txt)
    assert metrics["i2t_recall@1"] == 0.0


def test_cli_eval_images_on_samples(tmp_path):
    from clinrag.cli import app

    _, _, _, ckpt = save_tiny_open_clip(tmp_path)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["eval", "images", "--data", str(SAMPLES), "--image-model",
                                   f"{TINY_ARCH}@{ckpt}", "--json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout.strip().splitlines()[-1])
    assert payload == json.loads(out.read_text())
    assert payload["n_images"] == 6 and payload["n_texts"] == 5 and not payload["random_weights"]  # 2 share a note
    assert payload["chance"]["i2t_recall@1"] == pytest.approx(1 / 5) and payload["chance"]["t2i_recall@5"] == 5 / 6
    assert set(payload["metrics"]) == set(payload["chance"]) and len(payload["metrics"]) == 12
    assert all(0.0 <= v <= 1.0 for v in payload["metrics"].values())


@pytest.mark.skipif(COVID is None, reason="shared data covid-cxr not present (see shared/README.md)")
def test_covid_cxr_pairs():
    pairs = load_pairs(COVID)
    assert len(pairs.images) == 70 and len(pairs.texts) == 49
    assert {m for _, m in pairs.label} == {"x-ray", "ct"}
