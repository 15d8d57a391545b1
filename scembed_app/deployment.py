"""Where the app runs: a local server (the default) or a hosted, public deployment.

One switch, ``SCEMBED_HOSTED``, read from the environment or, when the app has a
``.streamlit/secrets.toml`` (hosted Streamlit keeps its secrets there), from
``st.secrets["SCEMBED_HOSTED"]``. The environment wins when both are set. ``1``, ``true``,
``yes`` and ``on`` turn hosted mode on; ``0``, ``false``, ``no``, ``off`` and an empty value
leave it off; any other value counts as hosted (a typo must not open the server's disk).

In hosted mode a visitor can use uploads, the built-in reference, references trained in
their tab and the Hugging Face hub, and nothing that reads the server's disk: no "Folder on
disk" reference source, no Atlas results path, no trust box for pickles, and no server paths
in the messages they see (:func:`public_text`). ``make run`` starts the app in local mode.

This module imports nothing else of the kit, so every other module may use it.
"""

from __future__ import annotations

import os
import re
from typing import Any

import streamlit as st

HOSTED_SWITCH = "SCEMBED_HOSTED"
_OFF = {"", "0", "false", "no", "off"}

# An absolute POSIX path: a "/" that starts a word (not inside "owner/name", "a/b" or a URL)
# followed by path characters, e.g. /tmp/tmpab12/data.h5ad or /root/.cache/huggingface/hub.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:~)?/[\w.@+~-]+(?:/[\w.@+~-]*)*")


def _switch_value() -> Any:
    value = os.environ.get(HOSTED_SWITCH)
    if value is not None and value.strip():
        return value
    try:
        if st.secrets.load_if_toml_exists():
            return st.secrets.get(HOSTED_SWITCH)
    except Exception:  # a broken secrets file must not break the app
        return None
    return None


def is_hosted() -> bool:
    """Whether this server is a public deployment (``SCEMBED_HOSTED``, env or secrets)."""
    value = _switch_value()
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    return text not in _OFF  # "1", "true", "yes", "on", and any unknown value (fail closed)


#: Largest upload on a public deployment, in MB: what a 2.7 GB container (hosted Streamlit's
#: most) was measured to hold for one visitor, the upload and then its projection (README
#: "Safe upload size", BENCHMARKS.md "Hostile input"). ``SCEMBED_UPLOAD_MB`` overrides it
#: for a larger server.
HOSTED_UPLOAD_MB = 250
#: Largest upload when run locally (``server.maxUploadSize`` in .streamlit/config.toml).
LOCAL_UPLOAD_MB = 1024


def upload_limit_mb() -> int:
    """The upload limit in MB: ``SCEMBED_UPLOAD_MB``, else measured hosted, else local."""
    text = os.environ.get("SCEMBED_UPLOAD_MB", "").strip()
    if text.isdigit() and int(text) > 0:
        return min(int(text), LOCAL_UPLOAD_MB)
    return HOSTED_UPLOAD_MB if is_hosted() else LOCAL_UPLOAD_MB


def redact_paths(text: str) -> str:
    """``text`` with every absolute file-system path replaced by its last component.

    ``"config.yaml in /root/.cache/hub/snapshots/ab12 is not valid YAML"`` becomes
    ``"config.yaml in ab12 is not valid YAML"``; ``hf:owner/name`` and URLs are kept.
    """

    def last_part(match: re.Match[str]) -> str:
        parts = [part for part in match.group(0).split("/") if part and part != "~"]
        return parts[-1] if parts else "(server path)"

    return _ABSOLUTE_PATH.sub(last_part, text)


def public_text(text: str) -> str:
    """``text`` as a visitor may see it: server paths removed in hosted mode."""
    return redact_paths(text) if is_hosted() else text
