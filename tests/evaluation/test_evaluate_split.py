"""Tests of ``unetseg.evaluation.evaluate_split``."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures import run, tiny_model_file, write_binary_dataset


def test_evaluate_on_a_yaml_with_only_a_test_split(tmp_path: Path, capsys) -> None:
    data = write_binary_dataset(tmp_path / "d", {"test": 3})
    yaml_path = tmp_path / "test-only.yaml"
    yaml_path.write_text(f"root: {data}\ntest: {{images: test/images, masks: test/masks}}\nclasses: [bg, call]\n")
    model = tiny_model_file(tmp_path, size=[64, 64])
    code, out, err = run(["evaluate", "--model", str(model), "--data", str(yaml_path), "--output",
                          str(tmp_path / "ev"), "--backend", "torch"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["images"] == 3
