"""Links and the list of hub models the Reference page offers (data, not logic)."""

from __future__ import annotations

from scembed_core.hub import KNOWN_HUB_MODELS

#: "hf:owner/name" -> one-line description, from the engine's list of published models.
HUB_CHOICES: dict[str, str] = {
    f"hf:{m['repo_id']}": f"{m['genome']}: {m['description']}" for m in KNOWN_HUB_MODELS
}

PAPER_URL = "https://doi.org/10.1093/nargab/lqae073"
PREPRINT_URL = "https://doi.org/10.1101/2023.08.01.551452"
GENIML_URL = "https://github.com/databio/geniml"
HUB_URL = "https://huggingface.co/databio"
