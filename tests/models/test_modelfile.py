"""Tests of ``unetseg.models.modelfile``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.fixtures import CLASSIC, SMALL, TINY_CFG, assert_one_line_error, run, tiny_model_file
from unetseg.cli import main
from unetseg.core.errors import UnetsegError
from unetseg.data.inputspec import InputSpec
from unetseg.models import create_model
from unetseg.models.modelfile import build_meta, load_model, read_meta, save_model_file


def test_info_reports_the_model_file(tiny_model: Path, capsys) -> None:
    code, out, err = run(["info", str(tiny_model)], capsys)
    assert code == 0, err
    info = json.loads(out)
    expected = sum(p.numel() for p in create_model(TINY_CFG, 1, 1).state_dict().values())
    assert info["classes"] == ["background", "call"] and info["binary"] is True
    assert info["input"]["size"] == [32, 32] and info["parameters"] == expected


@pytest.mark.parametrize("field, value, needle", [
    ("model.depth", 100, "model.depth: 100 is out of range"),
    ("model.base_width", 10**6, "model.base_width"),
    ("input.size", [-5, 64], "'input.size'"),
    ("input.channels", -1, "'input.channels'"),
    ("input", None, "'input' is missing"),
    ("format_version", "x", "'format_version' must be a positive integer"),
    ("input.std", [0.0], "'input.std' and input.mean must lie in"),
    ("input.std", [1e-308], "'input.std' and input.mean must lie in"),
    ("input.mean", [1e308], "'input.std' and input.mean must lie in"),
    ("threshold", 5, "'threshold' must lie between 0 and 1"),
])
def test_crafted_model_file_fields_are_one_line_errors(trained: Path, tmp_path: Path, capsys,
                                                       field: str, value: object, needle: str) -> None:
    """A model file whose metadata was edited fails at once, naming the field (depth 100 used to grow
    `predict` to 23 GB)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file


    with safe_open(str(trained), framework="pt") as f:
        header = f.metadata()
    meta = json.loads(header["meta"])
    *parents, last = field.split(".")
    target = meta
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    crafted = tmp_path / "crafted.safetensors"
    save_file(load_file(str(trained)), str(crafted), metadata={**header, "meta": json.dumps(meta)})
    for argv in (["info", str(crafted)], ["predict", "--model", str(crafted), "--input", str(tmp_path),
                                          "--output", str(tmp_path / "out")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and needle in err and "crafted.safetensors" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def _meta(model_cfg: dict) -> dict:
    spec = InputSpec(1, (64, 64), "resize", 8, (0.5,), (0.25,))
    return build_meta(model_cfg, ["background", "call"], True, [(0, 0, 0), (255, 0, 0)], spec, 0.4)


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = create_model(CLASSIC, 1, 1).eval()
    path = save_model_file(tmp_path / "m.safetensors", model, _meta(CLASSIC))
    loaded = load_model(path)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x))
    assert loaded.classes == ["background", "call"] and loaded.binary and loaded.threshold == 0.4
    assert loaded.input_spec == InputSpec(1, (64, 64), "resize", 8, (0.5,), (0.25,))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


@pytest.mark.parametrize("cfg", [CLASSIC | {"attention": True},
                                 CLASSIC | {"arch": "deeplabv3plus", "encoder": "resnet18"},
                                 CLASSIC | {"arch": "unet", "encoder": "mobilenet_v2"}])
def test_a_loaded_model_is_the_built_model_with_the_files_weights(cfg: dict, tmp_path: Path) -> None:
    """``load_model`` gives the checked skeleton the file's tensors (no weights initialised only to be replaced):
    every tensor, its dtype and the outputs equal those of a model built and loaded the plain way, also from a
    half-precision file (cast to float32 as a plain load casts), and nothing is left on the meta device."""
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = create_model(cfg, 1, 1).eval()
    spec = InputSpec(1, (64, 64), "resize", 8 if cfg["arch"] == "classic" else 32, (0.5,), (0.25,))
    meta = build_meta(cfg, ["background", "call"], True, [(0, 0, 0), (255, 0, 0)], spec, 0.4)
    path = save_model_file(tmp_path / "m.safetensors", model, meta)
    half = tmp_path / "half.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}, str(half),
              metadata=_raw_metadata(path))
    x = torch.randn(1, 1, 64, 64)
    for file in (path, half):
        plain = create_model(cfg, 1, 1)
        plain.load_state_dict(load_file(str(file)))
        loaded = load_model(file).model
        want, got = plain.eval().state_dict(), loaded.state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) and want[k].dtype == got[k].dtype for k in want), file.name
        assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
        with torch.no_grad():
            assert torch.equal(plain(x), loaded(x))


def _raw_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UnetsegError, match=r"junk\.safetensors: not a unetseg model file"):
        load_model(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UnetsegError, match="safetensors without unetseg metadata"):
        read_meta(tmp_path / "other.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(UnetsegError, match=r"model\.pt: not a unetseg model file"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(UnetsegError, match="model file not found"):
        load_model(tmp_path / "absent.safetensors")


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("input.size", None, "input.size"),  # a resize model without a size was an AssertionError
    ("colours", None, "colours"),  # was a TypeError when drawing
    ("input.divisor", 2, "stride"),  # smaller than the model's stride: a tensor shape error
])
def test_model_file_fields_found_by_fuzzing(field: str, value: object, needle: str, tmp_path: Path) -> None:
    from unetseg.models.modelfile import check_meta, read_meta

    meta = read_meta(tiny_model_file(tmp_path))
    *parents, last = field.split(".")
    target = meta
    for k in parents:
        target = target[k]
    target[last] = value
    with pytest.raises(UnetsegError, match=needle):
        check_meta(meta, "m.safetensors")


def test_builtin_names_the_call_prior_and_a_missing_one_is_a_clear_error(tmp_path: Path, monkeypatch,
                                                                         capsys) -> None:
    from unetseg.core.config import Config
    from unetseg.models import modelfile

    band = vars(Config().model) | SMALL | {"depth": 2, "base_width": 4, "input_norm": "band"}
    shipped = tiny_model_file(tmp_path, "pad", name="calls", channels=1, cfg=band)
    monkeypatch.setattr(modelfile, "PRIOR_FILE", shipped)
    assert modelfile.model_path("builtin") == shipped and modelfile.model_path("x.safetensors").name == "x.safetensors"
    assert load_model("builtin").path == shipped
    monkeypatch.setattr(modelfile, "PRIOR_FILE", tmp_path / "absent.safetensors")
    code, _, err = run(["info", "builtin"], capsys)
    assert_one_line_error(code, err, "builtin", "not in this install", "make prior")
