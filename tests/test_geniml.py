"""geniml model folders: torch-free checkpoint reading, validation and refusal of pickles.

The fixture in ``tests/data/geniml_tiny`` was written by real PyTorch
(``tests/data/make_geniml_fixture.py``); ``expected_weight.npy`` holds the same numbers
as plain numpy. Nothing here imports torch or unpickles with the standard unpickler.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from scembed_core.errors import ModelFormatError, UnsafeInputError, UntrustedSourceError
from scembed_core.formats.geniml import GTARS_SPECIAL_TOKENS, is_geniml_folder, read_geniml_model
from scembed_core.formats.torch_zip import read_torch_checkpoint
from scembed_core.model import RegionModel
from scembed_core.regions import GenomicRegions, map_peaks_to_universe

DATA = Path(__file__).parent / "data"
TINY = DATA / "geniml_tiny"
EVIL = DATA / "geniml_evil"
GRANJA = (
    Path(__file__).parents[2] / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
)
N_REGIONS, DIM = 60, 8


@pytest.fixture(scope="module")
def expected() -> np.ndarray:
    return np.load(TINY / "expected_weight.npy", allow_pickle=False)


def copy_model(tmp_path: Path, *, drop: tuple[str, ...] = ()) -> Path:
    """A writable copy of the tiny model without the files named in ``drop``."""
    folder = tmp_path / "model"
    shutil.copytree(TINY, folder)
    for name in ("expected_weight.npy", *drop):
        (folder / name).unlink()
    return folder


def universe_lines(folder: Path) -> list[tuple[str, int, int]]:
    rows = [line.split("\t") for line in (folder / "universe.bed").read_text().splitlines()]
    return [(c, int(s), int(e)) for c, s, e in rows]


def rewrite_checkpoint(src: Path, dst: Path, edit) -> None:
    """Copy a torch zip checkpoint, passing each member's bytes through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def write_pickle_checkpoint(path: Path, payload: bytes) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("checkpoint/data.pkl", payload)
        archive.writestr("checkpoint/version", "3\n")


def test_safetensors_model_matches_expected(expected):
    model = read_geniml_model(TINY)
    assert isinstance(model, RegionModel)
    assert model.vectors.dtype == np.float32
    assert model.vectors.shape == (N_REGIONS, DIM)
    np.testing.assert_array_equal(model.vectors, expected[:N_REGIONS])
    lines = universe_lines(TINY)
    assert (
        list(zip(model.universe.chrom, model.universe.start, model.universe.end, strict=True))
        == lines
    )
    # rows 5 and 41 were zeroed by the fixture: no learned vector
    assert np.flatnonzero(~model.trained).tolist() == [5, 41]
    assert model.metadata == {
        "source": str(TINY),
        "format": "geniml-safetensors",
        "weights_file": "model.safetensors",
        "embedding_dim": DIM,
        "vocab_size": N_REGIONS + len(GTARS_SPECIAL_TOKENS),
        "pooling": "mean",
        "n_special_tokens": 7,
    }


def test_checkpoint_model_matches_safetensors_twin(tmp_path, expected):
    folder = copy_model(tmp_path, drop=("model.safetensors",))
    model = read_geniml_model(folder)
    assert model.metadata["format"] == "geniml-checkpoint"
    np.testing.assert_array_equal(model.vectors, expected[:N_REGIONS])
    np.testing.assert_array_equal(model.vectors, read_geniml_model(TINY).vectors)


def test_read_torch_checkpoint_gives_full_state_dict(expected):
    tensors = read_torch_checkpoint(TINY / "checkpoint.pt")
    assert list(tensors) == ["projection.weight"]
    weight = tensors["projection.weight"]
    assert weight.flags.c_contiguous and weight.flags.writeable
    np.testing.assert_array_equal(weight, expected)  # special-token rows included


def test_big_endian_checkpoint(tmp_path, expected):
    def to_big(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, "<f4").astype(">f4").tobytes()
        return data

    path = tmp_path / "checkpoint.pt"
    rewrite_checkpoint(TINY / "checkpoint.pt", path, to_big)
    weight = read_torch_checkpoint(path)["projection.weight"]
    assert weight.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(weight, expected)


def test_evil_checkpoint_is_refused_without_running_it(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a) or 0)
    with pytest.raises(UnsafeInputError, match=r"os\.system"):
        read_geniml_model(EVIL)
    assert calls == []


class _Exploit:
    """Pickles as a call of ``os.system``; only ever dumped here, never loaded normally."""

    def __reduce__(self):
        return (os.system, ("echo scembed-test",))


@pytest.mark.parametrize(
    "payload, name",
    [
        (pickle.dumps(_Exploit(), protocol=2), f"{os.system.__module__}.system"),
        (b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.", "builtins.eval"),
        (b"\x80\x02ctorch\nload\nX\x01\x00\x00\x00x\x85R.", "torch.load"),
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n)R.",
            "numpy.core.multiarray._reconstruct",
        ),
        (b"\x80\x04\x8c\x08builtins\x8c\x04exec\x93)R.", "builtins.exec"),
    ],
)
def test_restricted_unpickler_refuses_other_globals(tmp_path, payload, name):
    path = tmp_path / "checkpoint.pt"
    write_pickle_checkpoint(path, payload)
    with pytest.raises(UnsafeInputError, match=name.replace(".", r"\.")):
        read_torch_checkpoint(path)


def test_universe_with_fewer_lines_is_rejected_with_numbers(tmp_path):
    folder = copy_model(tmp_path)
    lines = (folder / "universe.bed").read_text().splitlines(keepends=True)
    (folder / "universe.bed").write_text("".join(lines[:-1]))
    with pytest.raises(ModelFormatError) as info:
        read_geniml_model(folder)
    message = str(info.value)
    assert "59 regions" in message and "67 rows" in message
    assert "expected 59 rows, or 66" in message


def test_wrong_vocab_size_is_rejected_with_numbers(tmp_path):
    folder = copy_model(tmp_path)
    (folder / "config.yaml").write_text("embedding_dim: 8\nvocab_size: 70\n")
    with pytest.raises(ModelFormatError, match=r"67 rows but config.yaml says vocab_size is 70"):
        read_geniml_model(folder)


def test_wrong_embedding_dim_is_rejected(tmp_path):
    folder = copy_model(tmp_path)
    (folder / "config.yaml").write_text("embedding_dim: 16\nvocab_size: 67\n")
    with pytest.raises(
        ModelFormatError, match=r"8 columns but config.yaml says embedding_dim is 16"
    ):
        read_geniml_model(folder)


def test_old_embedding_size_key_and_gzipped_universe(tmp_path, expected):
    folder = copy_model(tmp_path)
    config = "embedding_size: 8\nvocab_size: 67\npooling_method: MAX\ngenome: hg19\n"
    (folder / "config.yaml").write_text(config)
    bed = folder / "universe.bed"
    (folder / "universe.bed.gz").write_bytes(gzip.compress(bed.read_bytes()))
    bed.unlink()
    model = read_geniml_model(folder)
    assert model.metadata["pooling"] == "max" and model.metadata["genome"] == "hg19"
    np.testing.assert_array_equal(model.vectors, expected[:N_REGIONS])


def test_universe_equal_to_rows_means_no_special_tokens(tmp_path, expected):
    folder = copy_model(tmp_path, drop=("checkpoint.pt",))
    from safetensors.numpy import save_file

    save_file({"projection.weight": expected[:N_REGIONS].copy()}, folder / "model.safetensors")
    (folder / "config.yaml").write_text("embedding_dim: 8\nvocab_size: 60\n")
    model = read_geniml_model(folder)
    assert model.metadata["n_special_tokens"] == 0
    np.testing.assert_array_equal(model.vectors, expected[:N_REGIONS])


def test_single_unnamed_tensor_is_accepted_but_several_are_not(tmp_path, expected):
    from safetensors.numpy import save_file

    folder = copy_model(tmp_path, drop=("checkpoint.pt",))
    save_file({"embeddings": expected.copy()}, folder / "model.safetensors")
    np.testing.assert_array_equal(read_geniml_model(folder).vectors, expected[:N_REGIONS])
    save_file({"a": expected.copy(), "b": expected.copy()}, folder / "model.safetensors")
    with pytest.raises(ModelFormatError, match=r"none is called 'projection.weight'"):
        read_geniml_model(folder)


def test_truncated_checkpoint_is_a_format_error(tmp_path):
    folder = copy_model(tmp_path, drop=("model.safetensors",))
    path = folder / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1500])
    with pytest.raises(ModelFormatError, match=r"checkpoint.pt \(1500 bytes\) is not a PyTorch"):
        read_geniml_model(folder)


def test_truncated_storage_and_out_of_bounds_tensor(tmp_path):
    short = tmp_path / "short.pt"
    rewrite_checkpoint(TINY / "checkpoint.pt", short, lambda n, d: d[:100] if "/data/" in n else d)
    with pytest.raises(ModelFormatError, match=r"has 100 bytes but 536 x torch.FloatStorage"):
        read_torch_checkpoint(short)

    # the pickle claims 68 x 8 over a storage of 67 x 8 floats
    wide = tmp_path / "wide.pt"

    def grow(name, data):
        return data.replace(b"KCK\x08\x86", b"KDK\x08\x86") if name.endswith(".pkl") else data

    rewrite_checkpoint(TINY / "checkpoint.pt", wide, grow)
    with pytest.raises(ModelFormatError, match=r"reaches element 543 of a storage with only 536"):
        read_torch_checkpoint(wide)


def test_truncated_safetensors_is_a_format_error(tmp_path):
    folder = copy_model(tmp_path)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ModelFormatError, match=r"model.safetensors is not a readable"):
        read_geniml_model(folder)


def test_legacy_torch_pickle_is_explained(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19.")
    with pytest.raises(ModelFormatError, match=r"legacy \(pre-1.6\) serialization"):
        read_torch_checkpoint(path)


@pytest.mark.parametrize(
    "drop, message",
    [
        (("universe.bed",), r"has no universe.bed"),
        (("config.yaml",), r"has no config.yaml"),
        (("model.safetensors", "checkpoint.pt"), r"No model weights"),
    ],
)
def test_missing_files_are_named(tmp_path, drop, message):
    with pytest.raises(ModelFormatError, match=message):
        read_geniml_model(copy_model(tmp_path, drop=drop))


@pytest.mark.parametrize(
    "config, message",
    [
        ("vocab_size: 67\n", r"has no embedding_size"),
        ("embedding_dim: 8\nvocab_size: -1\n", r"vocab_size must be a positive integer"),
        ("embedding_dim: 8\nvocab_size: 67\npooling_method: sum\n", r"pooling_method 'sum'"),
        ("- just\n- a list\n", r"not a key: value mapping"),
        ("embedding_dim: [8\n", r"not valid YAML"),
    ],
)
def test_bad_config_is_rejected(tmp_path, config, message):
    folder = copy_model(tmp_path)
    (folder / "config.yaml").write_text(config)
    with pytest.raises(ModelFormatError, match=message):
        read_geniml_model(folder)


def test_is_geniml_folder(tmp_path):
    assert is_geniml_folder(TINY) and is_geniml_folder(EVIL)
    assert not is_geniml_folder(DATA)
    assert not is_geniml_folder(TINY / "config.yaml")
    assert not is_geniml_folder(copy_model(tmp_path, drop=("model.safetensors", "checkpoint.pt")))


def gensim_folder(tmp_path: Path) -> tuple[Path, object]:
    """A paper-era gensim model (keys ``chr_start_end``) whose universe has one unseen region."""
    from gensim.models import Word2Vec

    folder = tmp_path / "gensim"
    folder.mkdir()
    regions = universe_lines(TINY)[:6]
    words = [f"{c}_{s}_{e}" for c, s, e in regions[:5]]
    rng = np.random.default_rng(0)
    sentences = [list(rng.permutation(words)) for _ in range(20)]
    w2v = Word2Vec(sentences, vector_size=4, min_count=1, workers=1, seed=1, epochs=1)
    w2v.save(str(folder / "model.bin"))
    (folder / "universe.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in regions))
    return folder, w2v


def test_gensim_model_needs_trust(tmp_path):
    folder, _ = gensim_folder(tmp_path)
    assert is_geniml_folder(folder)
    with pytest.raises(UntrustedSourceError) as info:
        read_geniml_model(folder)
    message = str(info.value)
    assert "pickle" in message and "--trust" in message and "I trust this source" in message


def test_gensim_model_with_trust_maps_words_onto_universe(tmp_path):
    folder, w2v = gensim_folder(tmp_path)
    model = read_geniml_model(folder, trust_pickle=True)
    assert model.metadata["format"] == "gensim" and model.metadata["embedding_dim"] == 4
    assert model.trained.tolist() == [True] * 5 + [False]
    for i, name in enumerate(model.universe.names[:5]):
        np.testing.assert_array_equal(model.vectors[i], w2v.wv[name])
    assert not model.vectors[5].any()


def test_fixture_universe_overlaps_granja_peaks():
    if not GRANJA.is_file():
        pytest.skip("shared Granja 2019 data not present")
    import h5py

    with h5py.File(GRANJA, "r") as handle:
        names = [n.decode() for n in handle["var"][handle["var"].attrs["_index"]][:]]
    peaks = GenomicRegions.from_names(names)
    mapping = map_peaks_to_universe(peaks, read_geniml_model(TINY).universe)
    assert mapping.n_mapped_peaks >= N_REGIONS
    assert (np.asarray(mapping.matrix.sum(axis=0)).ravel() > 0).all()


def test_evil_fixture_really_calls_os_system():
    """Guard for the refusal test: the fixture carries ``os.system`` (read, never loaded)."""
    with zipfile.ZipFile(EVIL / "checkpoint.pt") as archive:
        data = archive.read("checkpoint/data.pkl")
    import pickletools

    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(io.BytesIO(data))]
    assert ("GLOBAL", "os system") in ops
