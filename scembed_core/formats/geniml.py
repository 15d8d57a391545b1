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

The restricted checkpoint reader is :mod:`scembed_core.formats.torch_zip`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFormatError, ModelFormatError, UntrustedSourceError
from ..model import RegionModel
from ..regions import GenomicRegions, parse_region_names
from .torch_zip import read_torch_checkpoint

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "GENSIM_FILE",
    "GTARS_SPECIAL_TOKENS",
    "SAFETENSORS_FILE",
    "UNIVERSE_FILES",
    "is_geniml_folder",
    "load_yaml_data",
    "read_geniml_model",
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

    _check_closed(folder)
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


def _check_closed(folder: Path) -> None:
    """Refuse a model folder whose files are links to files outside it (before any read)."""
    from ..reference.files import bundle_file

    names = (CONFIG_FILE, *UNIVERSE_FILES, SAFETENSORS_FILE, CHECKPOINT_FILE, GENSIM_FILE)
    for name in names:
        if os.path.lexists(folder / name):
            bundle_file(folder, name, what="The model folder")


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


#: Upper bounds of a geniml config (a model bigger than these is not one anyone publishes).
MAX_VOCAB_SIZE = 50_000_000
MAX_EMBEDDING_DIM = 4096
MAX_CONFIG_BYTES = 64 * 1024


def _positive_int(key: str, value: Any, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= upper:
        shown = repr(value)[:40] if isinstance(value, (int, float, str)) else type(value).__name__
        raise ModelFormatError(
            f"{CONFIG_FILE}: {key} must be a positive integer (at most {upper:,}), found {shown}."
        )
    return value


def load_yaml_data(text: str, what: str) -> Any:
    """Parse YAML as plain data: safe constructors only, and no aliases at all.

    Parameters
    ----------
    text
        The YAML text.
    what
        How messages name the file.

    Returns
    -------
    Any
        What :func:`yaml.safe_load` returns for it.

    Raises
    ------
    ModelFormatError
        Invalid YAML, a tag outside the safe set, or an alias (``*name``): a config never
        needs one, and nested aliases expand a few hundred bytes into gigabytes.
    """
    import yaml

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ModelFormatError(
                    f"{what} uses a YAML alias (*{str(event.anchor)[:40]}); a config is plain "
                    "key: value data, so aliases are refused."
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelFormatError(f"{what} is not valid YAML: {str(exc)[:300]}") from exc


def _read_config(folder: Path, *, required: bool = True) -> dict:
    """``vocab_size``, ``embedding_dim`` and ``pooling`` from ``config.yaml``, schema-checked."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        if not required:
            return {}
        raise ModelFormatError(
            f"{folder} has no {CONFIG_FILE}. A geniml model folder holds {CONFIG_FILE} "
            "(vocab_size, embedding_dim), universe.bed and checkpoint.pt or model.safetensors."
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelFormatError(
            f"{CONFIG_FILE} is {path.stat().st_size:,} bytes; a model config is at most "
            f"{MAX_CONFIG_BYTES:,}."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{CONFIG_FILE} in {folder} is not UTF-8 text.") from exc
    raw = load_yaml_data(text, f"{CONFIG_FILE} in {folder.name}")
    if not isinstance(raw, dict):
        raise ModelFormatError(f"{CONFIG_FILE} in {folder} is not a key: value mapping.")
    dim_key = "embedding_dim" if "embedding_dim" in raw else "embedding_size"
    for key in ("vocab_size", dim_key):
        if key not in raw:
            found = ", ".join(sorted(str(k)[:40] for k in raw)[:20]) or "no keys"
            raise ModelFormatError(
                f"{CONFIG_FILE} in {folder} has no {key} (found {found}); expected vocab_size "
                "and embedding_dim."
            )
    pooling = raw.get("pooling_method") or "mean"
    if not isinstance(pooling, str) or pooling.lower() not in POOLING_METHODS:
        shown = repr(pooling[:40]) if isinstance(pooling, str) else type(pooling).__name__
        raise ModelFormatError(
            f"{CONFIG_FILE}: pooling_method {shown} is not supported; expected mean or max."
        )
    genome = raw.get("genome")
    if genome is not None and not (isinstance(genome, str) and len(genome) <= 100):
        raise ModelFormatError(f"{CONFIG_FILE}: genome must be a short text, e.g. hg38.")
    return {
        "vocab_size": _positive_int("vocab_size", raw["vocab_size"], MAX_VOCAB_SIZE),
        "embedding_dim": _positive_int(dim_key, raw[dim_key], MAX_EMBEDDING_DIM),
        "pooling": pooling.lower(),
        "genome": genome or None,
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
    _check_closed(folder)
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
