"""Read pretrained scEmbed models saved in geniml's format, without PyTorch.

A geniml model folder (what ``databio/r2v-*`` repositories on the Hugging Face hub hold)
has three parts:

``config.yaml``
    ``vocab_size``, ``embedding_dim`` (older exports: ``embedding_size``) and an optional
    ``pooling_method`` (``mean`` or ``max``).
``universe.bed`` (or ``universe.bed.gz``)
    The region vocabulary: the region on 0-based line ``i`` is token ``i``.
weights
    ``model.safetensors`` when present, else ``checkpoint.pt``: the state dict of a torch
    module whose only parameter is ``projection.weight``, a ``vocab_size x embedding_dim``
    float matrix. gtars appends 7 special tokens (``<unk>``, ``<pad>``, ``<mask>``, ``<cls>``,
    ``<eos>``, ``<bos>``, ``<sep>``) after the regions, so the matrix may have 7 more rows
    than the universe has lines; those rows are dropped here.

``checkpoint.pt`` is a pickle inside a zip archive. It is read with a restricted unpickler
that knows the handful of globals a tensor state dict needs and refuses every other one, so
a malicious checkpoint cannot run code. The paper-era gensim format (``model.bin`` plus
``.npy`` side files) is a plain pickle and is only read when the caller trusts the source.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputFormatError, ModelFormatError, UnsafeInputError, UntrustedSourceError
from .model import RegionModel
from .regions import GenomicRegions, parse_region_names

__all__ = [
    "GTARS_SPECIAL_TOKENS",
    "is_geniml_folder",
    "read_geniml_model",
    "read_torch_checkpoint",
]

CONFIG_FILE = "config.yaml"
UNIVERSE_FILES = ("universe.bed", "universe.bed.gz")
SAFETENSORS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"
GENSIM_FILE = "model.bin"
WEIGHT_KEY = "projection.weight"
POOLING_METHODS = ("mean", "max")

#: Special tokens gtars appends after the universe regions, in id order.
GTARS_SPECIAL_TOKENS = ("<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "<sep>")

# A state dict's pickle only describes tensors; the numbers live in separate zip members.
_MAX_PICKLE_BYTES = 16 * 1024 * 1024
_STORAGE_DTYPES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
}
_STORAGE_KEY = re.compile(r"^[A-Za-z0-9_.]+$")


def is_geniml_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like a geniml model folder.

    Parameters
    ----------
    path
        A folder (anything else gives ``False``).

    Returns
    -------
    bool
        ``True`` if the folder has ``config.yaml`` and a weights file (``model.safetensors``,
        ``checkpoint.pt`` or ``model.bin``), or a gensim ``model.bin`` next to a universe BED.
        A folder that passes may still be inconsistent: :func:`read_geniml_model` checks it.
    """
    folder = Path(path)
    if not folder.is_dir():
        return False

    def has(name: str) -> bool:
        return (folder / name).is_file()

    weights = has(SAFETENSORS_FILE) or has(CHECKPOINT_FILE) or has(GENSIM_FILE)
    if has(CONFIG_FILE) and weights:
        return True
    return has(GENSIM_FILE) and any(has(name) for name in UNIVERSE_FILES)


def read_geniml_model(folder: str | Path, *, trust_pickle: bool = False) -> RegionModel:
    """Load a geniml model folder as a :class:`~scembed_core.model.RegionModel`.

    Parameters
    ----------
    folder
        The model folder (e.g. a Hugging Face snapshot from :func:`~scembed_core.hub.fetch_hub_model`).
    trust_pickle
        Allow the paper-era gensim format (``model.bin``), which is a Python pickle and can
        run arbitrary code when loaded. Never needed for ``model.safetensors`` or
        ``checkpoint.pt``, which are read without unpickling anything but tensors.

    Returns
    -------
    RegionModel
        One vector per universe region (special-token rows dropped), the mask of rows that
        are not all-zero in ``trained``, and ``metadata`` with ``source``, ``format``
        (``geniml-safetensors``, ``geniml-checkpoint`` or ``gensim``), ``weights_file``,
        ``embedding_dim``, ``vocab_size``, ``pooling``, ``n_special_tokens`` and, when
        ``config.yaml`` names one, ``genome``.

    Raises
    ------
    ModelFormatError
        A file is missing or unreadable, or the config, universe and weights disagree.
    UnsafeInputError
        ``checkpoint.pt`` asks for a Python global a tensor state dict never needs.
    UntrustedSourceError
        The folder only has a gensim pickle and ``trust_pickle`` is ``False``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder} is not a folder; a geniml model is a folder of files.")
    if (folder / SAFETENSORS_FILE).is_file():
        fmt, weights_file = "geniml-safetensors", SAFETENSORS_FILE
    elif (folder / CHECKPOINT_FILE).is_file():
        fmt, weights_file = "geniml-checkpoint", CHECKPOINT_FILE
    elif (folder / GENSIM_FILE).is_file():
        return _read_gensim_model(folder, trust_pickle=trust_pickle)
    else:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
        raise ModelFormatError(
            f"No model weights in {folder}: expected {SAFETENSORS_FILE}, {CHECKPOINT_FILE} "
            f"or {GENSIM_FILE} next to {CONFIG_FILE} and universe.bed; found {found}."
        )

    config = _read_config(folder)
    universe = _read_universe(folder)
    path = folder / weights_file
    tensors = (
        _read_safetensors(path) if fmt == "geniml-safetensors" else read_torch_checkpoint(path)
    )
    weight = _select_weight(tensors, weights_file)
    vectors, n_special = _check_shapes(weight, config, len(universe), weights_file)
    metadata = {
        "source": str(folder),
        "format": fmt,
        "weights_file": weights_file,
        "embedding_dim": config["embedding_dim"],
        "vocab_size": config["vocab_size"],
        "pooling": config["pooling"],
        "n_special_tokens": n_special,
    }
    if config["genome"]:
        metadata["genome"] = config["genome"]
    return _make_model(universe, vectors, metadata)


def read_torch_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Read the tensors of a PyTorch zip checkpoint (``torch.save``) as numpy arrays.

    Only the globals a tensor state dict needs are admitted (``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2``, ``torch._utils._rebuild_tensor`` and the float16,
    float32 and float64 storage types); any other global is refused before it is looked up.

    Parameters
    ----------
    path
        A ``checkpoint.pt`` written by PyTorch 1.6 or later (a zip archive holding
        ``<prefix>/data.pkl`` and one ``<prefix>/data/<key>`` member per storage).

    Returns
    -------
    dict
        Tensor name (nested dicts joined with ``.``) to a C-contiguous numpy array.

    Raises
    ------
    UnsafeInputError
        The pickle names a global outside the allowed list (the message names it).
    ModelFormatError
        The file is not a readable PyTorch zip checkpoint (legacy format, truncated, corrupt).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head[:1] == b"\x80":
            raise ModelFormatError(
                f"{path.name} uses PyTorch's legacy (pre-1.6) serialization, which cannot be read "
                "without PyTorch. Re-save it with a recent PyTorch or provide model.safetensors."
            )
        raise ModelFormatError(
            f"{path.name} ({path.stat().st_size} bytes) is not a PyTorch zip checkpoint; "
            "the download may be truncated. Delete it and download the model again."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [
                n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1
            ]
            if len(pickles) != 1:
                raise ModelFormatError(
                    f"{path.name} is a zip archive but not a PyTorch checkpoint: expected one "
                    f"<name>/data.pkl member, found {len(pickles)}."
                )
            info = archive.getinfo(pickles[0])
            if info.file_size > _MAX_PICKLE_BYTES:
                raise UnsafeInputError(
                    f"{path.name}: its data.pkl is {info.file_size} bytes, far more than a state "
                    f"dict needs (limit {_MAX_PICKLE_BYTES}); refusing to unpickle it."
                )
            prefix = pickles[0][: -len("/data.pkl")]
            byteorder = "little"
            if f"{prefix}/byteorder" in archive.namelist():
                byteorder = archive.read(f"{prefix}/byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ModelFormatError(f"{path.name}: unknown byte order {byteorder!r}.")
            unpickler = _StateDictUnpickler(
                io.BytesIO(archive.read(pickles[0])), archive, prefix, byteorder, path.name
            )
            loaded = unpickler.load()
    except (UnsafeInputError, ModelFormatError):
        raise
    except Exception as exc:  # any failure to parse untrusted bytes is a format error
        raise ModelFormatError(
            f"{path.name} is not a readable PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            "The file may be truncated or corrupt: delete it and download the model again."
        ) from exc
    tensors = _flatten_tensors(loaded)
    if not tensors:
        raise ModelFormatError(f"{path.name} holds no tensors.")
    return tensors


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only carries the numpy dtype."""

    def __init__(self, name: str, dtype: type) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """Numpy twin of ``torch._utils._rebuild_tensor``: a bounds-checked strided copy."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise ModelFormatError("A tensor in the checkpoint does not point at a storage.")
    size, stride = tuple(size), tuple(stride)
    values = (storage_offset, *size, *stride)
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ModelFormatError(
            f"A tensor in the checkpoint has an invalid layout (offset {storage_offset!r}, "
            f"size {size!r}, stride {stride!r})."
        )
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype.newbyteorder("="))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ModelFormatError(
            f"A tensor in the checkpoint reaches element {last} of a storage with only "
            f"{storage.size} elements; the file is corrupt."
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(s * storage.itemsize for s in stride),
        writeable=False,
    )
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C", copy=True)


def _rebuild_tensor_v2(
    storage: Any, storage_offset: Any, size: Any, stride: Any, *_ignored: Any
) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``; requires_grad, hooks and metadata are ignored."""
    return _rebuild_tensor(storage, storage_offset, size, stride)


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that admits only what a tensor state dict needs."""

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    }

    def __init__(
        self,
        file: io.BytesIO,
        archive: zipfile.ZipFile,
        prefix: str,
        byteorder: str,
        label: str,
    ) -> None:
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._order = "<" if byteorder == "little" else ">"
        self._label = label
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if module == "torch" and name.endswith("Storage"):
            raise ModelFormatError(
                f"{self._label} stores tensors as torch.{name}; only float16, float32 and "
                "float64 weights can be read without PyTorch. Convert the checkpoint to float32."
            )
        raise UnsafeInputError(
            f"{self._label} asks to load the Python global '{module}.{name}', which a model "
            "state dict never needs; refusing to unpickle it (it could run arbitrary code). "
            "Only tensors of float16/32/64 in a dict are accepted. Use a model.safetensors "
            "file, or a checkpoint from a source you know."
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelFormatError(f"{self._label}: unexpected persistent id {str(pid)[:80]!r}.")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise ModelFormatError(
                f"{self._label}: storage type {storage_type!r} is not supported."
            )
        if not (isinstance(key, str) and _STORAGE_KEY.match(key)):
            raise ModelFormatError(f"{self._label}: invalid storage key {str(key)[:40]!r}.")
        if not (isinstance(numel, int) and numel >= 0):
            raise ModelFormatError(f"{self._label}: invalid storage size {numel!r}.")
        if key not in self._storages:
            member = f"{self._prefix}/data/{key}"
            try:
                info = self._archive.getinfo(member)
            except KeyError:
                raise ModelFormatError(
                    f"{self._label} is missing its storage {member}; the file is incomplete."
                ) from None
            dtype = storage_type.dtype.newbyteorder(self._order)
            needed = numel * dtype.itemsize
            if info.file_size < needed:
                raise ModelFormatError(
                    f"{self._label}: storage {member} has {info.file_size} bytes but "
                    f"{numel} x {storage_type!r} needs {needed}; the file is truncated."
                )
            raw = self._archive.read(member)
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        storage = self._storages[key]
        if storage.dtype != storage_type.dtype.newbyteorder(self._order):
            raise ModelFormatError(f"{self._label}: storage {key} is used with two dtypes.")
        return storage


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Tensors of a (possibly nested) dict as ``{dotted.name: array}``; other values skipped."""
    if isinstance(obj, np.ndarray):
        return {prefix or "tensor": obj}
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten_tensors(value, name))
    return out


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, TypeError, ValueError, OSError) as exc:
        raise ModelFormatError(
            f"{path.name} is not a readable float safetensors file ({exc}). It may be truncated "
            "or hold bfloat16 weights: delete it and download the model again."
        ) from exc


def _select_weight(tensors: dict[str, np.ndarray], weights_file: str) -> np.ndarray:
    """The embedding matrix: ``projection.weight``, else the only tensor there is."""
    if WEIGHT_KEY in tensors:
        return tensors[WEIGHT_KEY]
    suffixed = [k for k in tensors if k.endswith("." + WEIGHT_KEY)]
    if len(suffixed) == 1:
        return tensors[suffixed[0]]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    names = ", ".join(sorted(tensors)[:8])
    raise ModelFormatError(
        f"{weights_file} holds {len(tensors)} tensors ({names}) and none is called "
        f"'{WEIGHT_KEY}'; cannot tell which is the region embedding matrix."
    )


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelFormatError(f"{CONFIG_FILE}: {key} must be a positive integer, found {value!r}.")
    return value


def _read_config(folder: Path, *, required: bool = True) -> dict:
    """``vocab_size``, ``embedding_dim`` and ``pooling`` from ``config.yaml``."""
    import yaml

    path = folder / CONFIG_FILE
    if not path.is_file():
        if not required:
            return {}
        raise ModelFormatError(
            f"{folder} has no {CONFIG_FILE}. A geniml model folder holds {CONFIG_FILE} "
            "(vocab_size, embedding_dim), universe.bed and checkpoint.pt or model.safetensors."
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{CONFIG_FILE} in {folder} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{CONFIG_FILE} in {folder} is not a key: value mapping.")
    dim_key = "embedding_dim" if "embedding_dim" in raw else "embedding_size"
    for key in ("vocab_size", dim_key):
        if key not in raw:
            found = ", ".join(sorted(map(str, raw))) or "no keys"
            raise ModelFormatError(
                f"{CONFIG_FILE} in {folder} has no {key} (found {found}); expected vocab_size "
                "and embedding_dim."
            )
    pooling = str(raw.get("pooling_method") or "mean").lower()
    if pooling not in POOLING_METHODS:
        raise ModelFormatError(
            f"{CONFIG_FILE}: pooling_method {pooling!r} is not supported; expected mean or max."
        )
    return {
        "vocab_size": _positive_int("vocab_size", raw["vocab_size"]),
        "embedding_dim": _positive_int(dim_key, raw[dim_key]),
        "pooling": pooling,
        "genome": str(raw["genome"]) if raw.get("genome") else None,
    }


def _universe_path(folder: Path) -> Path | None:
    return next((folder / n for n in UNIVERSE_FILES if (folder / n).is_file()), None)


def _read_universe(folder: Path) -> GenomicRegions:
    path = _universe_path(folder)
    if path is None:
        raise ModelFormatError(
            f"{folder} has no universe.bed: without it the rows of the weight matrix cannot be "
            "matched to regions (geniml 0.8's export omits it). Copy the BED file the model was "
            "trained on into the folder as universe.bed, one region per token, in token order."
        )
    try:
        return GenomicRegions.read_bed(path).validate("universe regions")
    except InputFormatError as exc:
        raise ModelFormatError(f"{path.name} in {folder}: {exc}") from exc


def _check_shapes(
    weight: np.ndarray, config: dict, n_regions: int, weights_file: str
) -> tuple[np.ndarray, int]:
    """Check weight rows against vocab_size and the universe; return region rows as float32."""
    if weight.ndim != 2:
        raise ModelFormatError(
            f"{weights_file}: expected a 2-D weight matrix (vocab_size x embedding_dim), "
            f"found shape {weight.shape}."
        )
    rows, cols = weight.shape
    if rows != config["vocab_size"]:
        raise ModelFormatError(
            f"{weights_file} has {rows} rows but {CONFIG_FILE} says vocab_size is "
            f"{config['vocab_size']}: the weights and config do not belong together. "
            "Download the model again."
        )
    n_special = len(GTARS_SPECIAL_TOKENS)
    if rows == n_regions:
        n_special = 0
    elif rows != n_regions + n_special:
        raise ModelFormatError(
            f"universe.bed has {n_regions} regions but {weights_file} has {rows} rows "
            f"(vocab_size {config['vocab_size']}); expected {n_regions} rows, or "
            f"{n_regions + n_special} with gtars' {n_special} special tokens. The universe "
            "file does not belong to this model."
        )
    if cols != config["embedding_dim"]:
        raise ModelFormatError(
            f"{weights_file} has {cols} columns but {CONFIG_FILE} says embedding_dim is "
            f"{config['embedding_dim']}."
        )
    vectors = np.ascontiguousarray(weight[:n_regions], dtype=np.float32)
    bad = int((~np.isfinite(vectors)).any(axis=1).sum())
    if bad:
        raise ModelFormatError(f"{weights_file}: {bad} region vectors contain NaN or infinity.")
    return vectors, n_special


def _make_model(universe: GenomicRegions, vectors: np.ndarray, metadata: dict) -> RegionModel:
    trained = ~np.all(vectors == 0, axis=1)
    return RegionModel(universe=universe, vectors=vectors, trained=trained, metadata=metadata)


def _read_gensim_model(folder: Path, *, trust_pickle: bool) -> RegionModel:
    """Paper-era format: gensim ``model.bin`` (+ ``.npy`` side files), keys ``chr_start_end``."""
    if not trust_pickle:
        raise UntrustedSourceError(
            f"{folder / GENSIM_FILE} is a gensim model saved with Python pickle, which can run "
            "arbitrary code when loaded. Load it only if you trust where it came from: pass "
            '--trust on the command line or tick "I trust this source" in the app.'
        )
    from gensim.models import KeyedVectors, Word2Vec

    path = str(folder / GENSIM_FILE)
    try:
        wv = Word2Vec.load(path).wv
    except Exception:  # not a Word2Vec model: try bare KeyedVectors next
        try:
            wv = KeyedVectors.load(path)
        except Exception as exc:  # a trusted pickle can fail in any way
            raise ModelFormatError(
                f"{GENSIM_FILE} in {folder} is not a gensim Word2Vec or KeyedVectors model "
                f"({type(exc).__name__}: {exc}). Are its .npy side files next to it?"
            ) from exc
    if not isinstance(wv, KeyedVectors) or len(wv) == 0:
        raise ModelFormatError(f"{GENSIM_FILE} in {folder} holds no word vectors.")

    config = _read_config(folder, required=False)
    keys = [str(k) for k in wv.index_to_key]
    if _universe_path(folder) is not None:
        universe = _read_universe(folder)
        if all(k.isdigit() for k in keys):  # keys are token ids (later geniml exports)
            index = {int(k): i for i, k in enumerate(keys)}
            rows = np.array([index.get(t, -1) for t in range(len(universe))])
        else:
            index = {k: i for i, k in enumerate(keys)}
            rows = np.array([index.get(name, -1) for name in universe.names])
        if not (rows >= 0).any():
            raise ModelFormatError(
                f"None of the {len(keys)} words of {GENSIM_FILE} (e.g. {keys[0]!r}) names a "
                f"region of universe.bed (e.g. {universe.names[0]!r}); they do not belong together."
            )
    else:
        try:
            universe = parse_region_names(keys).validate("model regions")
        except InputFormatError as exc:
            raise ModelFormatError(
                f"{folder} has no universe.bed and the words of {GENSIM_FILE} are not region "
                f"names: {exc}"
            ) from exc
        rows = np.arange(len(keys))
    vectors = np.zeros((len(universe), wv.vector_size), dtype=np.float32)
    vectors[rows >= 0] = np.asarray(wv.vectors, dtype=np.float32)[rows[rows >= 0]]
    if config and config["embedding_dim"] != wv.vector_size:
        raise ModelFormatError(
            f"{GENSIM_FILE} has {wv.vector_size}-dimensional vectors but {CONFIG_FILE} says "
            f"embedding_dim is {config['embedding_dim']}."
        )
    metadata = {
        "source": str(folder),
        "format": "gensim",
        "weights_file": GENSIM_FILE,
        "embedding_dim": int(wv.vector_size),
        "vocab_size": len(keys),
        "pooling": config.get("pooling", "mean"),
        "n_special_tokens": 0,
    }
    if config.get("genome"):
        metadata["genome"] = config["genome"]
    return _make_model(universe, vectors, metadata)
