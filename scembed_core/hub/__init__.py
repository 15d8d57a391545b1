"""The Hugging Face hub: the only module of the engine that touches the network.

A hub reference is written ``hf:OWNER/NAME`` or, pinned to a commit, tag or branch,
``hf:OWNER/NAME@REVISION``. :func:`fetch_hub_model` downloads the files a reference needs
into huggingface_hub's standard cache and returns the local snapshot folder; everything
downstream takes that folder. huggingface_hub itself honours ``HF_HUB_OFFLINE``,
``HF_HUB_CACHE``/``HF_HOME`` and ``HF_TOKEN``; ``HF_HUB_OFFLINE`` is also re-read at call
time so setting it after import works. huggingface_hub is imported lazily, so importing
the engine never imports it.

Rooms: :mod:`.spec` (the ``hf:`` grammar), :mod:`.download` (``snapshot_download``, error
mapping, progress), :mod:`.card` (the model card, on huggingface_hub's ``ModelCard``),
:mod:`.push` (upload) and :mod:`.catalog` (known models).
"""

from __future__ import annotations

from .card import model_card, render_model_card
from .catalog import KNOWN_HUB_MODELS
from .download import (
    FETCH_PATTERNS,
    HubReference,
    detect_reference_format,
    fetch_hub_model,
    is_offline,
    load_hub_reference,
)
from .push import push_bundle
from .spec import HUB_PREFIX, MANIFEST_FILE, README_FILE, parse_hub_spec

__all__ = [
    "FETCH_PATTERNS",
    "HUB_PREFIX",
    "KNOWN_HUB_MODELS",
    "MANIFEST_FILE",
    "README_FILE",
    "HubReference",
    "detect_reference_format",
    "fetch_hub_model",
    "is_offline",
    "load_hub_reference",
    "model_card",
    "parse_hub_spec",
    "push_bundle",
    "render_model_card",
]
