"""Session-state keys, their defaults and the values kept under them.

Session state is per browser tab. Every key the app uses is declared here once; pages
read and write them through these names only. Nothing here is module-level mutable
state: defaults are built fresh for each session by :func:`init_state`. This module imports
nothing of the kit but :mod:`scembed_app.deployment`; the page guards that need the cached
reference and the widgets are in :mod:`scembed_app.guards`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import streamlit as st

from scembed_app import deployment


class PageStop(Exception):  # noqa: N818 (a control-flow signal, like StopIteration)
    """Raised by :func:`stop_page`: the page is done for this run (caught by the router)."""


def stop_page() -> None:
    """End the current page here, like ``st.stop()``, but leave the frame drawable.

    After ``st.stop()`` Streamlit refuses every further element of the run, so the router
    could not draw the sidebar summary on a page that stopped at a guard. This raises
    :class:`PageStop` instead, which the router catches before drawing the sidebar.
    """
    raise PageStop


#: Seconds the server's background warm-ups wait once the first page is drawn, so that the
#: browser paints the landing page's charts before the server loads the full reference and
#: its kernels on the same cores (``make bench-cold`` measures the first chart).
WARMUP_DELAY_S = 5.0

if TYPE_CHECKING:  # anndata is heavy: not imported before the router's navigation is sent
    from scembed_app.uploads import LoadedDataset

# --- keys -----------------------------------------------------------------------------

REFERENCE_SPEC = "reference_spec"  # str: "default", a folder, "hf:owner/name@rev", "session:NAME"
TRUST_HUB = "trust_hub"  # bool: user ticked "I trust this source" for the current spec
TRAINED = "trained_references"  # dict[str, TrainedReference] trained in this tab
DATASET = "dataset"  # LoadedDataset | None
UPLOAD_IDS = "upload_ids"  # tuple of st.file_uploader file ids last processed
UPLOAD_ERROR = "upload_error"  # str | None: why the last upload could not be read
PENDING_UPLOAD = "pending_upload"  # SpooledUpload | None: stored by the uploader, to be read
PROJECTION = "projection"  # ProjectionRun | None
RESOLUTION = "resolution"  # float: Louvain resolution
RESOLUTION_CURVE = "resolution_curve"  # pd.DataFrame | None from "find resolution for k"
CLUSTER_SEARCH = "cluster_search"  # str | None: outcome of the last "find resolution for k"
LABEL_KEY = "label_key"  # str | None: reference obs column transferred (None: default)
LABEL_METHOD = "label_method"  # str: "classifier" (the reference's label model) or "knn"
MIN_CONFIDENCE = "min_confidence"  # float in [0, 1]
LIMIT_DISTANCE = "limit_distance"  # bool: apply MAX_DISTANCE
MAX_DISTANCE = "max_distance"  # float | None: cells mapped farther are Unassigned
UNKNOWN_RATE = "unknown_rate"  # float: strictness of the Unknown rule (0: off)
TRUTH_KEY = "truth_key"  # str | None: query obs column used as ground truth (None: guessed)
NO_TRUTH = "(none)"  # TRUTH_KEY's value when the user chose not to score
LABEL_MAP = "label_map"  # dict[str, str]: reference label -> user label (scoring only)
NORMALIZE_CONFUSION = "normalize_confusion"  # bool
LIFTOVER = "liftover"  # bool: lift peaks onto the reference's build when detection is confident
# the workspace (scembed_app/workspaces.py): the analysis kept on the server's disk
WORKSPACE = "workspace_id"  # str | None: id of the workspace this tab shows (also in the URL)
OWNED = (
    "workspaces_owned"  # list[str]: workspaces this tab created (or forked); others are read-only
)
SAVED = "workspace_saved"  # dict: what the workspace on disk holds (to write only what changed)
WORKSPACE_NOTICE = "workspace_notice"  # str | None: one message about the workspace (restore, fork)
WORKSPACE_PROBLEM = "workspace_problem"  # tuple (kind, id) | None: a link that cannot be opened
STORED_RESULTS = "stored_results"  # dict | None: clusters/labels read from the workspace
DATASET_NOTICE = "dataset_notice"  # str | None: which settings a new dataset reset (Data page)
FIGURE_FORMAT = "figure_format"  # str: "png" or "svg", what a chart's camera button saves
REFERENCE_CURVES = "reference_curves"  # bool: the landing page's calibration curves open
QC_UNFILTERED = "qc_unfiltered"  # LoadedDataset | None: the dataset before the QC filter (undo)

#: Settings kept in the workspace (JSON) and restored from it; every other key is per tab.
WORKSPACE_SETTINGS = (
    REFERENCE_SPEC,
    RESOLUTION,
    RESOLUTION_CURVE,
    CLUSTER_SEARCH,
    LABEL_KEY,
    LABEL_METHOD,
    MIN_CONFIDENCE,
    LIMIT_DISTANCE,
    MAX_DISTANCE,
    UNKNOWN_RATE,
    TRUTH_KEY,
    LABEL_MAP,
    NORMALIZE_CONFUSION,
    LIFTOVER,
)

#: Settings that belong to one dataset: a new dataset starts from their defaults (with a
#: notice); every other setting (reference, label column and method, liftover) persists.
DATASET_SETTINGS = {
    RESOLUTION: "resolution",
    RESOLUTION_CURVE: "resolution curve",
    CLUSTER_SEARCH: "cluster search",
    TRUTH_KEY: "truth column",
    LABEL_MAP: "label mapping",
    MIN_CONFIDENCE: "minimum probability",
    LIMIT_DISTANCE: "distance limit",
    MAX_DISTANCE: "maximum mapping distance",
}

PAGE_REFERENCE = "pages/reference.py"
PAGE_DATA = "pages/data.py"
PAGE_PROJECT = "pages/project.py"
PAGE_CLUSTERS = "pages/clusters.py"
PAGE_ANNOTATE = "pages/annotate.py"
PAGE_TRAIN = "pages/train.py"
PAGE_EXPORT = "pages/export.py"
PAGE_ATLAS = "pages/atlas.py"
PAGE_ABOUT = "pages/about.py"
#: Every page script, in the navigation's order (the router, workspaces and tests use it).
ALL_PAGES = (
    PAGE_REFERENCE,
    PAGE_DATA,
    PAGE_PROJECT,
    PAGE_CLUSTERS,
    PAGE_ANNOTATE,
    PAGE_TRAIN,
    PAGE_EXPORT,
    PAGE_ATLAS,
    PAGE_ABOUT,
)

DEFAULT_RESOLUTION = 1.0
N_NEIGHBORS = 15


def _defaults() -> dict[str, Any]:
    return {
        # A deployment may start every session on another reference (folder or hf: spec).
        REFERENCE_SPEC: os.environ.get("SCEMBED_REFERENCE", "default"),
        TRUST_HUB: False,
        TRAINED: {},
        DATASET: None,
        UPLOAD_IDS: (),
        UPLOAD_ERROR: None,
        PENDING_UPLOAD: None,
        PROJECTION: None,
        RESOLUTION: DEFAULT_RESOLUTION,
        RESOLUTION_CURVE: None,
        CLUSTER_SEARCH: None,
        LABEL_KEY: None,
        LABEL_METHOD: "classifier",
        MIN_CONFIDENCE: 0.0,
        LIMIT_DISTANCE: False,
        MAX_DISTANCE: None,
        UNKNOWN_RATE: 0.05,
        TRUTH_KEY: None,
        LABEL_MAP: {},
        NORMALIZE_CONFUSION: True,
        LIFTOVER: True,
        WORKSPACE: None,
        OWNED: [],
        SAVED: {},
        WORKSPACE_NOTICE: None,
        WORKSPACE_PROBLEM: None,
        STORED_RESULTS: None,
        DATASET_NOTICE: None,
        FIGURE_FORMAT: "png",
        QC_UNFILTERED: None,
    }


def defaults() -> dict[str, Any]:
    """A new tab's state (a fresh copy): what the server's warm-up computes the demo under."""
    return _defaults()


def init_state() -> None:
    """Fill in any missing key with its default (called by the router on every run)."""
    for key, value in _defaults().items():
        if key not in st.session_state:
            st.session_state[key] = value


# --- values kept in session state -------------------------------------------------------
@dataclass(frozen=True)
class TrainedReference:
    """A reference trained in this tab (never shared with other sessions)."""

    name: str
    key: str
    reference: Any  # scembed_core.reference.Reference
    label_key: str
    params: dict = field(default_factory=dict)
    bundle_zip: bytes | None = None


@dataclass(frozen=True)
class ProjectionRun:
    """The result of the Project page for one (dataset, reference) pair."""

    dataset_digest: str
    reference_key: str
    projection: Any  # scembed_core.project.Projection
    n_cells: int
    n_projected: int
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def cache_key(self) -> str:
        """Key of every per-projection cache entry (upload digest + reference)."""
        return f"{self.dataset_digest}|{self.reference_key}"


def trust_allowed() -> bool:
    """Whether visitors may allow pickled reference parts (the server operator decides).

    Off unless ``SCEMBED_ALLOW_TRUST=1`` is set for the server (``make run`` sets it, as
    the person running it locally is the operator), and always off in hosted mode
    (:mod:`scembed_app.deployment`): on a shared, hosted app an anonymous visitor must never
    be able to make the server unpickle a file of their choosing.
    """
    return os.environ.get("SCEMBED_ALLOW_TRUST") == "1" and not deployment.is_hosted()


# --- session transitions -------------------------------------------------------------
def _differs(value: Any, default: Any) -> bool:
    if value is None or default is None:
        return value is not default
    try:
        return bool(value != default)
    except (TypeError, ValueError):  # a frame: compared by being there at all
        return True


def set_dataset(dataset: LoadedDataset, *, new_data: bool = True) -> None:
    """Make ``dataset`` this tab's query; results of the previous one are dropped.

    A new dataset (``new_data``) also starts from the defaults of every setting that
    belongs to a dataset (:data:`DATASET_SETTINGS`), and the Data page says which ones
    were reset; ``new_data=False`` is the same cells in another form (a liftover), which
    keeps them. Reference-level choices always persist.
    """
    previous = st.session_state.get(DATASET)
    st.session_state[DATASET] = dataset
    st.session_state[UPLOAD_ERROR] = None
    st.session_state[PROJECTION] = None
    if not new_data:
        st.session_state[RESOLUTION_CURVE] = None
        st.session_state[CLUSTER_SEARCH] = None
        return
    defaults = _defaults()
    changed = [
        name
        for key, name in DATASET_SETTINGS.items()
        if _differs(st.session_state.get(key), defaults[key])
    ]
    for key in DATASET_SETTINGS:
        st.session_state[key] = defaults[key]
        st.session_state.pop(f"w_{key}", None)  # bound widgets re-seed from the default
    st.session_state[DATASET_NOTICE] = None
    if previous is not None and changed:
        st.session_state[DATASET_NOTICE] = (
            f"New dataset: {', '.join(changed)} started from the defaults (they belong to "
            "one dataset); the reference and the label method are kept."
        )
