"""Configs are data (attack run 2026-12, G3-G6, R15-R17): schemas and limits before use."""

from __future__ import annotations

import json
import shutil
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scembed_core.errors import ModelFormatError, ReferenceBundleError
from scembed_core.evmap import MapParams
from scembed_core.formats.geniml import read_geniml_model
from scembed_core.formats.torch_zip import read_torch_checkpoint

TINY = Path(__file__).resolve().parents[1] / "data" / "geniml_tiny"


def _laughs(levels: int, key: str) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    other = {"pooling_method": "vocab_size: 5\nembedding_dim: 4", "vocab_size": "embedding_dim: 4"}
    return "\n".join(lines) + f"\n{other[key]}\n{key}: *a{levels - 1}\n"


@pytest.mark.parametrize("key", ["pooling_method", "vocab_size"])
def test_a_yaml_alias_bomb_is_refused_before_anything_expands(tmp_path, key):
    folder = tmp_path / "laughs"
    shutil.copytree(TINY, folder)
    (folder / "model.safetensors").unlink()
    (folder / "config.yaml").write_text(_laughs(6, key))
    with pytest.raises(ModelFormatError, match="alias") as info:
        read_geniml_model(folder)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("vocab_size: 10000000000\nembedding_dim: 8\n", "vocab_size must be a positive"),
        ("vocab_size: 5\nembedding_dim: 100000\n", "embedding_dim must be a positive"),
        ("vocab_size: 5\nembedding_dim: 8\npooling_method: [1, 2]\n", "pooling_method list"),
        ("vocab_size: 5\nembedding_dim: 8\ngenome: {a: 1}\n", "genome must be"),
    ],
)
def test_config_values_are_checked_against_a_schema(tmp_path, text, match):
    folder = tmp_path / "m"
    shutil.copytree(TINY, folder)
    (folder / "config.yaml").write_text(text)
    with pytest.raises(ModelFormatError, match=match):
        read_geniml_model(folder)


def _stride0_checkpoint(path: Path, n: int, m: int) -> None:
    p = (
        b"\x80\x02ccollections\nOrderedDict\n)RX\x11\x00\x00\x00projection.weight"
        b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
        b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x01tQK\x00"
        + b"J"
        + struct.pack("<i", n)
        + b"J"
        + struct.pack("<i", m)
        + b"\x86K\x00K\x00\x86\x89ccollections\nOrderedDict\n)RtRs."
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", p)
        archive.writestr("archive/data/0", b"\0" * 4)


def test_a_stride0_tensor_is_refused_before_allocating_it(tmp_path):
    path = tmp_path / "checkpoint.pt"
    _stride0_checkpoint(path, 8192, 8192)  # 256 MB if materialised, from a 400-byte file
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="stride 0"):
            read_torch_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_a_deeply_nested_checkpoint_is_a_typed_error(tmp_path):
    depth = 5000
    payload = b"\x80\x02" + b"}X\x01\x00\x00\x00k" * depth + b"}" + b"s" * depth + b"."
    path = tmp_path / "checkpoint.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    with pytest.raises(ModelFormatError, match="nests dicts"):
        read_torch_checkpoint(path)


def _map(**changes) -> dict:
    data = {"a": 1.577, "b": 0.895, "n_epochs": 200}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"n_epochs": 3 * 10**9}, "n_epochs"),
        ({"a": 1e308, "b": 1e308}, "a is 1e"),
        ({"learning_rate": 1e300}, "learning_rate is 1e"),
        ({"negative_sample_rate": 1e9}, "negative_sample_rate"),
        ({"repulsion_strength": float("inf")}, "repulsion_strength"),
        ({"n_neighbors": 10**9}, "n_neighbors"),
        ({"transform_seed": "x"}, "transform_seed"),
    ],
)
def test_map_json_values_out_of_range_are_refused(changes, match):
    with pytest.raises(ReferenceBundleError, match=match):
        MapParams.from_dict(_map(**changes))


def test_map_json_of_a_real_bundle_still_loads():
    from scembed_core.reference.core import DEFAULT_REFERENCE_DIR

    data = json.loads((DEFAULT_REFERENCE_DIR / "map.json").read_text())
    assert MapParams.from_dict(data).to_dict()["a"] == pytest.approx(data["a"])
    assert np.isfinite(MapParams.from_dict(data).a)
