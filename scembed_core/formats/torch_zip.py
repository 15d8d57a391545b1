"""Read the tensors of a PyTorch zip checkpoint (``torch.save``) without PyTorch, safely.

``checkpoint.pt`` is a pickle inside a zip archive. It is read with a restricted unpickler
that knows the handful of globals a tensor state dict needs (``collections.OrderedDict``,
``torch._utils._rebuild_tensor[_v2]`` and the float16/32/64 storage types) and refuses every
other one before it is looked up, so a malicious checkpoint cannot run code. Tensor layouts
are bounds-checked against their storages. This is the engine's one security-critical
reader of a pickle format; it imports nothing of the engine but its errors.
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

from ..errors import ModelFormatError, UnsafeInputError

__all__ = ["read_torch_checkpoint"]


# A state dict's pickle only describes tensors; the numbers live in separate zip members.
_MAX_PICKLE_BYTES = 16 * 1024 * 1024


_STORAGE_DTYPES = {
    "HalfStorage": np.float16,
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
}


_STORAGE_KEY = re.compile(r"^[A-Za-z0-9_.]+$")


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
    if any(s == 0 and n > 1 for n, s in zip(size, stride, strict=True)):
        raise ModelFormatError(
            f"A tensor in the checkpoint repeats one element along a dimension (stride 0, size "
            f"{size!r}); a saved weight matrix never does. Refused before allocating it."
        )
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise ModelFormatError(
            f"A tensor in the checkpoint reaches element {last} of a storage with only "
            f"{storage.size} elements; the file is corrupt."
        )
    count = 1
    for n in size:
        count *= n
    if count > storage.size - storage_offset:
        raise ModelFormatError(
            f"A tensor in the checkpoint declares {count:,} elements but its storage holds "
            f"{storage.size - storage_offset:,} from its offset; the file is corrupt."
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
        self._total = 0

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
            self._total += needed
            if info.file_size > 64 * max(info.compress_size, 1 << 14) or self._total > (
                _storage_budget()
            ):
                raise ModelFormatError(
                    f"{self._label}: its storages expand to {self._total:,} bytes (compressed "
                    "far beyond what a saved model is, or more than the memory budget); "
                    "refused before reading them."
                )
            raw = self._archive.read(member)
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        storage = self._storages[key]
        if storage.dtype != storage_type.dtype.newbyteorder(self._order):
            raise ModelFormatError(f"{self._label}: storage {key} is used with two dtypes.")
        return storage


#: How deep a state dict may nest dicts (a model's is 1-3 levels).
_MAX_DEPTH = 32


def _storage_budget() -> int:
    from ..io._budget import default_memory_budget

    return default_memory_budget()


def _flatten_tensors(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, np.ndarray]:
    """Tensors of a (possibly nested) dict as ``{dotted.name: array}``; other values skipped."""
    if isinstance(obj, np.ndarray):
        return {prefix or "tensor": obj}
    if depth > _MAX_DEPTH:
        raise ModelFormatError(
            f"The checkpoint nests dicts more than {_MAX_DEPTH} levels deep; a state dict "
            "never does."
        )
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = f"{prefix}.{key}" if prefix else str(key)[:200]
            out.update(_flatten_tensors(value, name[:1000], depth + 1))
    return out
