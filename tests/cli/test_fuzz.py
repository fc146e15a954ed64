"""Fuzzing the command line: corrupted model files, config values, image and mask files.

Each case runs ``python -m unetseg`` in a subprocess with its data segment limited to 3 GB
(``RLIMIT_DATA``: the address-space limit cannot be used, torch maps more than that at import) and a
timeout. Every case must end with exit 0 and a correct result, or exit 2 and one ``error:`` line: never a
traceback, an internal error, a hang or the memory limit. Examples are derandomised (the same in every CI
run) and bounded in number."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.fixtures import tiny_model_file, write_binary_dataset

MEMORY_LIMIT = 3 << 30


TIMEOUT = 120


FUZZ = settings(max_examples=int(os.environ.get("UNETSEG_FUZZ_EXAMPLES", "10")), deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck), database=None)


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    try:
        r = subprocess.run([sys.executable, "-m", "unetseg", "-q", *argv], cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT, preexec_fn=_limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung past {TIMEOUT} s: unetseg {' '.join(argv)}")
    return r.returncode, r.stdout, r.stderr


def assert_clean(code: int, err: str, what: str) -> bool:
    """True for a success, False for a clean one-line refusal; anything else fails the test."""
    assert "Traceback" not in err and "internal error" not in err, f"{what}\n{err}"
    assert code in (0, 2), f"{what}: exit {code}\n{err}"
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and err.rstrip().endswith(lines[0]), f"{what}\n{err}"
    return code == 0


@pytest.fixture(scope="module")
def workdir() -> Path:
    root = Path(tempfile.mkdtemp(prefix="unetseg-fuzz-"))
    data = write_binary_dataset(root / "data", {"train": 6, "valid": 2, "test": 2}, size=64)
    model = tiny_model_file(root, size=[32, 32])
    return root, data, model  # type: ignore[return-value]


VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2),
    st.text(max_size=6), st.sampled_from(["auto", "pad", "x", "1e9", "", "cuda", "bce+dice"]),
    st.lists(st.integers(-8, 5000), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(tree: dict, prefix: tuple = ()) -> list[tuple]:
    out = []
    for k, v in tree.items():
        out.append((*prefix, k))
        if isinstance(v, dict):
            out += _paths(v, (*prefix, k))
    return out


def _set(tree: dict, path: tuple, value: object) -> None:
    for k in path[:-1]:
        tree = tree[k]
    tree[path[-1]] = value


def _model_meta(model: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(model), framework="pt") as f:
        header = f.metadata()
    return header, json.loads(header["meta"])


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_model_files(workdir: tuple, data: st.DataObject) -> None:
    from safetensors.torch import load_file, save_file

    root, dataset, model = workdir
    raw = model.read_bytes()
    header, meta = _model_meta(model)
    kind = data.draw(st.sampled_from(["truncate", "bytes", "meta", "meta"]))
    case = Path(tempfile.mkdtemp(dir=root))
    crafted = case / "m.safetensors"
    if kind == "truncate":
        crafted.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "bytes":
        header_end = 8 + int.from_bytes(raw[:8], "little")
        buf = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 4))):
            buf[data.draw(st.integers(0, header_end - 1))] = data.draw(st.integers(0, 255))
        crafted.write_bytes(bytes(buf))
    else:
        path = data.draw(st.sampled_from(_paths(meta)))
        _set(meta, path, data.draw(VALUES))
        save_file(load_file(str(model)), str(crafted), metadata={**header, "meta": json.dumps(meta)})
    images = dataset / "test" / "images"
    code, _, err = cli(["predict", "--model", str(crafted), "--input", str(images), "--output", str(case / "out"),
                        "--backend", "torch"], case)
    if assert_clean(code, err, kind):
        for image in images.iterdir():
            with Image.open(image) as a, Image.open(case / "out" / image.name) as b:
                assert a.size == b.size


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_config_values(workdir: tuple, data: st.DataObject) -> None:
    import yaml

    from unetseg.core.config import Config

    root, dataset, _ = workdir
    tree = Config().to_dict()
    path = data.draw(st.sampled_from([p for p in _paths(tree) if len(p) == 2]))
    value = data.draw(VALUES)
    cfg = {path[0]: {path[1]: value}}
    case = Path(tempfile.mkdtemp(dir=root))
    (case / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    # the flags bound the work a valid value could ask for; they override the same keys of the YAML
    code, _, err = cli(["train", "--config", "cfg.yaml", "--data", str(dataset), "--runs-dir", "runs", "--epochs", "1",
                        "--max-time", "0.5", "--no-progress", "--workers", "0", "--no-test"], case)
    if assert_clean(code, err, f"{path} = {value!r}"):
        assert list((case / "runs").glob("*/weights/best.safetensors")), err
    else:
        assert not (case / "runs").exists() or not any((case / "runs").iterdir()), "a refused run left a folder"


def _corrupt(path: Path, data: st.DataObject) -> str:
    kind = data.draw(st.sampled_from(["truncate", "mode", "size", "jpeg", "exif", "frames", "empty"]))
    with Image.open(path) as img:
        img.load()
    if kind == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "mode":
        mode = data.draw(st.sampled_from(["L", "RGB", "RGBA", "P", "LA", "1", "I;16", "I"]))
        img.convert(mode).save(path, format="PNG")
    elif kind == "size":
        w, h = data.draw(st.integers(1, 400)), data.draw(st.integers(1, 400))
        img.resize((w, h)).save(path, format="PNG")
    elif kind == "jpeg":  # JPEG bytes under the .png name
        img.convert("RGB" if img.mode not in ("L", "RGB") else img.mode).save(
            path, format="JPEG", quality=data.draw(st.integers(1, 95)))
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = data.draw(st.integers(0, 70000))
        img.save(path, format="PNG", exif=exif)
    else:
        frames = [img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
        frames[0].save(path, format="PNG", save_all=True, append_images=frames[1:])
    return kind


@pytest.mark.slow
@FUZZ
@given(data=st.data())
def test_fuzz_image_and_mask_files(workdir: tuple, data: st.DataObject) -> None:
    import shutil

    root, dataset, model = workdir
    case = Path(tempfile.mkdtemp(dir=root))
    shutil.copytree(dataset / "test", case / "test")
    which = data.draw(st.sampled_from(["images", "masks"]))
    target = data.draw(st.sampled_from(sorted((case / "test" / which).iterdir())))
    kind = _corrupt(target, data)
    code, _, err = cli(["evaluate", "--model", str(model), "--data", str(case), "--split", "test", "--output",
                        str(case / "ev"), "--backend", "torch"], case)
    if assert_clean(code, err, f"{which}/{target.name}: {kind}"):
        metrics = json.loads((case / "ev" / "metrics.json").read_text())
        assert metrics["images"] == 2 and 0 <= metrics["accuracy"] <= 1
    if which == "images":
        code, _, err = cli(["predict", "--model", str(model), "--input", str(target), "--output", str(case / "p"),
                            "--backend", "torch"], case)
        if assert_clean(code, err, f"predict {target.name}: {kind}"):
            mask = np.asarray(Image.open(case / "p" / target.name))
            assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
