"""Workspaces in the app: the one place the app talks to the workspace store.

An analysis (dataset, reference identity, every setting, projection, clusters and labels)
lives in a :class:`scembed_app.workspace.Workspace` on the server's disk, under the id
in the URL (``?ws=<32 hex digits>``). The router calls three functions on every run:

* :func:`open_from_url` before the page: a new session whose URL carries an id gets the
  analysis back (read, not recomputed), on the page it was on. A malformed, unknown or
  expired id becomes a *problem* (:func:`problem_page` explains it instead of the page).
* :func:`save` after the page: whatever changed since the last save is written (the dataset
  and the projection only when they change; settings, page and results as small files). The
  workspace is created with the first thing worth keeping, the dataset. The id is put (back)
  into the URL on every run, as page navigation drops query parameters.
* :func:`sidebar`: "Copy link to this analysis" and notices.

A tab owns the workspaces it created (``state.OWNED``), and so does every later tab of the
same browser: the workspace's manifest keeps a hash of the browser's owner secret, a cookie
(:mod:`scembed_app.owner`), so a reload or a server restart keeps editing rights. One it
does not own (a link from someone else's browser) is shown read-only: the first change of a
parameter forks it (:meth:`WorkspaceStore.fork`) into a new id, so nobody overwrites
another's analysis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import streamlit as st

from scembed_app import cached, deployment, owner, results, state
from scembed_app import workspace_io as wio
from scembed_app.workspace import WorkspaceLimits, WorkspaceStore, default_root, is_valid_id
from scembed_core.errors import (
    ScEmbedError,
    WorkspaceExpired,
    WorkspaceNotFound,
    WorkspaceTooLarge,
)

QUERY_KEY = "ws"
#: Changes that make a read-only (shared) analysis fork; the page alone never does.
PARAMETERS = ("dataset", "reference", "reference_zip", "settings", "projection")
PROBLEMS = {
    "malformed": (
        "This link is not valid",
        "The analysis id in this link is malformed: an id is 32 characters 0-9 and a-f. "
        "The link may have been cut short or changed.",
    ),
    "unknown": (
        "Analysis not found",
        "No analysis with this id is kept on this server: it was never created, was removed "
        "to make room, or the link is incomplete.",
    ),
    "expired": ("This analysis has expired", ""),
    "damaged": (
        "This analysis cannot be opened",
        "Its files on the server could not be read.",
    ),
}


# --- the store -----------------------------------------------------------------------------
#: Environment variables an operator may set: expiry in days, budgets in MB (one / all).
LIMIT_VARIABLES = {
    "max_age_seconds": ("SCEMBED_WORKSPACE_DAYS", 86400.0),
    "max_bytes": ("SCEMBED_WORKSPACE_MAX_MB", 2**20),
    "max_total_bytes": ("SCEMBED_WORKSPACES_TOTAL_MB", 2**20),
    "max_visitor_bytes": ("SCEMBED_VISITOR_MB", 2**20),
}


def limits() -> WorkspaceLimits:
    """Expiry and budgets: the engine's defaults, or the operator's environment variables."""
    import os

    chosen = {}
    for field, (variable, unit) in LIMIT_VARIABLES.items():
        text = os.environ.get(variable, "").strip()
        try:
            value = float(text) * unit if text else None
        except ValueError:
            value = None  # a typo keeps the default rather than breaking every page
        if value is not None and value > 0:
            chosen[field] = value if field == "max_age_seconds" else int(value)
    return WorkspaceLimits(**chosen)


def visitor_key() -> str | None:
    """A short hash of the visitor's address (for the per-visitor quota), None if unknown."""
    import hashlib

    try:
        forwarded = st.context.headers.get("X-Forwarded-For") or ""
        address = forwarded.split(",")[0].strip() or st.context.ip_address
    except Exception:  # outside a script run, or an older Streamlit
        return None
    if not address:
        return None
    return hashlib.sha256(f"scembed-visitor:{address}".encode()).hexdigest()[:16]


@st.cache_resource(show_spinner=False)
def _store_at(root: str, limits: WorkspaceLimits) -> WorkspaceStore:
    """One store per root for the whole process; expired workspaces go at start-up."""
    store = WorkspaceStore(Path(root), limits)
    store.cleanup()
    return store


def store() -> WorkspaceStore:
    """The server's workspace store (root: ``$SCEMBED_WORKSPACES`` or the default)."""
    return _store_at(str(default_root(hosted=deployment.is_hosted())), limits())


def current_id() -> str | None:
    """The id of the workspace this tab shows, or None before the first dataset."""
    return st.session_state.get(state.WORKSPACE)


def owned(ws_id: str | None = None) -> bool:
    """Whether this tab owns (may write) the workspace ``ws_id`` (default: the current one)."""
    ws_id = ws_id or current_id()
    return ws_id is not None and ws_id in st.session_state.get(state.OWNED, [])


# --- restore ---------------------------------------------------------------------------------
def open_from_url(page_path: str | None) -> str | None:
    """Restore the analysis named in the URL into a new session; returns a page to go to.

    Does nothing when the tab already shows a workspace or the URL has none. The id is
    checked by format before anything touches the disk.
    """
    s = st.session_state
    url_id = st.query_params.get(QUERY_KEY)
    if current_id() is not None:
        return None
    if url_id is None:
        s[state.WORKSPACE_PROBLEM] = None
        return None
    problem = s.get(state.WORKSPACE_PROBLEM)
    if problem is not None and problem[1] == url_id:
        return None  # already explained on an earlier run
    if not is_valid_id(url_id):
        s[state.WORKSPACE_PROBLEM] = ("malformed", url_id, "")
        return None
    try:
        workspace = store().open(url_id)
        with st.spinner("Restoring the analysis..."):
            analysis = wio.read_analysis(workspace)
    except WorkspaceExpired as exc:
        s[state.WORKSPACE_PROBLEM] = ("expired", url_id, str(exc))
        return None
    except WorkspaceNotFound:
        s[state.WORKSPACE_PROBLEM] = ("unknown", url_id, "")
        return None
    except Exception as exc:  # any damage (BadZipFile, TypeError, ...): the "damaged" page
        s[state.WORKSPACE_PROBLEM] = ("damaged", url_id, _damage(exc))
        return None
    if workspace.owned_by(owner.token()) and not owned(url_id):
        s[state.OWNED] = [*s[state.OWNED], url_id]  # the browser that created it
    try:
        _restore(url_id, analysis)
    except Exception as exc:  # stored settings of the wrong types
        s[state.WORKSPACE_PROBLEM] = ("damaged", url_id, _damage(exc))
        return None
    stored_page = analysis.state.get("page")
    if page_path == state.PAGE_REFERENCE and stored_page in PAGE_PATHS and stored_page != page_path:
        return stored_page  # a link to the root opens on the page the analysis was on
    return None


def _damage(exc: Exception) -> str:
    """What the "damaged" page says about an error (an engine message, else its kind)."""
    text = str(exc) if isinstance(exc, ScEmbedError | OSError | ValueError) else ""
    return deployment.public_text(text or f"{type(exc).__name__}: the stored files are damaged.")


def _restore(ws_id: str, analysis: wio.StoredAnalysis) -> None:
    """Put a stored analysis into this (new) session; it stays read-only until changed."""
    s = st.session_state
    server_default = s[state.REFERENCE_SPEC]  # a new session's: "default" or SCEMBED_REFERENCE
    for key, value in wio.settings_values(analysis.state.get("settings") or {}).items():
        s[key] = value
        s.pop(f"w_{key}", None)  # widgets are re-seeded from the restored values
    identity = analysis.state.get("reference") or {}
    notices = []
    spec = wio.app_spec(identity) if identity else s[state.REFERENCE_SPEC]
    folder = not (spec == "default" or spec.startswith(("hf:", "session:")))
    if folder and deployment.is_hosted() and spec != server_default:
        # hosted: a folder is only ever the deployment's own default (SCEMBED_REFERENCE)
        notices.append("The analysis's reference folder is not available on this server.")
        spec = server_default
    if spec.startswith("session:") and analysis.reference_zip is not None:
        name = spec.removeprefix("session:")
        try:
            s[state.TRAINED] = {
                **s[state.TRAINED],
                name: wio.trained_from_zip(name, analysis.reference_zip, identity),
            }
        except ScEmbedError as exc:
            notices.append(
                "The reference trained in this analysis could not be restored: "
                + deployment.public_text(str(exc))
            )
    s[state.REFERENCE_SPEC] = spec
    s[state.DATASET] = analysis.dataset
    run = analysis.run
    try:
        ref_key, reference = cached.active_reference()
    except ScEmbedError as exc:
        notices.append(
            f"The analysis's reference could not be loaded ({deployment.public_text(str(exc))}); "
            "its projection is shown again once the reference loads and the cells are projected."
        )
        ref_key, reference, run = None, None, None
    if reference is not None and identity.get("fingerprint") not in (None, reference.fingerprint):
        notices.append(
            f"The reference {identity.get('name', spec)!r} has changed since this analysis was "
            "saved (its content fingerprint differs), so the stored projection, clusters and "
            "labels no longer match it. The dataset and settings are restored: project the "
            "cells again."
        )
        run = None
    if run is not None and run.reference_key == ref_key:
        s[state.PROJECTION] = run
        s[state.STORED_RESULTS] = analysis.results
    s[state.WORKSPACE] = ws_id
    s[state.WORKSPACE_NOTICE] = " ".join(notices) or None
    s[state.SAVED] = _snapshot(analysis.state.get("page"))
    s[state.SAVED]["page"] = analysis.state.get("page")
    if not owned(ws_id):
        st.toast(
            "Opened a shared analysis (read-only): a change saves a copy.", icon=":material/link:"
        )


# --- save ------------------------------------------------------------------------------------
def _reference_parts() -> tuple[dict | None, str | None, Any]:
    """The reference identity, the trained bundle's fingerprint (if any), the reference."""
    spec = st.session_state[state.REFERENCE_SPEC]
    try:
        _, reference = cached.active_reference()
    except ScEmbedError:
        return None, None, None
    trained = None
    if spec.startswith("session:"):
        trained = st.session_state[state.TRAINED].get(spec.removeprefix("session:"))
    identity = wio.reference_identity(spec, reference, trained)
    bundle = reference.fingerprint if trained is not None and trained.bundle_zip else None
    return identity, bundle, reference


def _current_results(reference: Any) -> tuple[dict | None, Any, Any]:
    """The key of the clusters/labels at the current settings, and them (lazily: callables)."""
    s = st.session_state
    run, dataset = s[state.PROJECTION], s[state.DATASET]
    if run is None or dataset is None or reference is None or run.dataset_digest != dataset.digest:
        return None, None, None
    try:
        ref_key, _ = cached.active_reference()
    except ScEmbedError:
        return None, None, None
    if run.reference_key != ref_key:
        return None, None, None
    resolution = float(s[state.RESOLUTION])
    key = {
        "clusters": results.clusters_key(run, resolution),
        "labels": results.labels_key(run, reference),
    }
    return (
        key,
        lambda: results.cluster_codes(run, resolution),
        lambda: results.labels(run, reference, dataset.adata.obs_names),
    )


def _snapshot(page: str | None) -> dict:
    """What the workspace should hold now, as comparable keys (nothing large)."""
    s = st.session_state
    dataset = s[state.DATASET]
    identity, bundle, reference = _reference_parts()
    key = _current_results(reference)[0]
    return {
        "dataset": dataset.digest if dataset is not None else None,
        "reference": identity,
        "reference_zip": bundle,
        "settings": wio.settings_json(s),
        "projection": wio.projection_key(s[state.PROJECTION]),
        "results": key,
        "page": page,
    }


def save(page_path: str | None) -> None:
    """Write what changed since the last save; fork a read-only workspace on a change."""
    s = st.session_state
    if s[state.DATASET] is None and current_id() is None:
        return  # nothing worth keeping yet
    try:
        _save(page_path)
    except (ScEmbedError, OSError) as exc:
        s[state.WORKSPACE_NOTICE] = (
            "This analysis could not be saved on the server: "
            f"{deployment.public_text(str(exc))} Your work in this tab is kept."
        )
    _sync_url()


def _save(page_path: str | None) -> None:
    s = st.session_state
    if page_path not in PAGE_PATHS:
        page_path = s[state.SAVED].get("page")
    now = _snapshot(page_path)
    saved = s[state.SAVED] if current_id() is not None else {}
    if now == saved:
        return
    ws_id = current_id()
    if ws_id is not None and not owned(ws_id):
        if all(now.get(k) == saved.get(k) for k in PARAMETERS):
            return  # looking around a shared analysis changes nothing
        workspace = store().fork(ws_id, owner=owner.token())
        s[state.WORKSPACE_NOTICE] = (
            "You changed a shared analysis, so your version was saved as a new analysis with "
            "its own link. The shared one is unchanged."
        )
        st.toast("Saved as a new analysis (new link).", icon=":material/fork_right:")
    elif ws_id is None:
        workspace = store().create(visitor=visitor_key(), owner=owner.token())
    else:
        try:
            workspace = store().open(ws_id)
        except (WorkspaceNotFound, WorkspaceExpired):  # removed meanwhile: start it again
            workspace, saved = store().create(visitor=visitor_key(), owner=owner.token()), {}
    if workspace.id != ws_id:
        s[state.OWNED] = [*s[state.OWNED], workspace.id]
        s[state.WORKSPACE] = workspace.id
    try:
        _write(workspace, now, saved)
    except WorkspaceTooLarge:
        # not retried on every run (the write is large): only when something changes again
        s[state.SAVED] = now
        raise
    s[state.SAVED] = now


def _write(workspace: Any, now: dict, saved: dict) -> None:
    """Write the items of ``now`` that differ from ``saved`` (small files last)."""
    s = st.session_state
    dataset, run = s[state.DATASET], s[state.PROJECTION]
    if now["dataset"] != saved.get("dataset") and dataset is not None:
        workspace.write_dataset(dataset.adata, wio.dataset_meta(dataset))
        saved = {**saved, "projection": None, "results": None}  # dropped with the dataset
    if now["reference_zip"] and now["reference_zip"] != saved.get("reference_zip"):
        trained = s[state.TRAINED][s[state.REFERENCE_SPEC].removeprefix("session:")]
        workspace.write_bytes(wio.REFERENCE_ZIP, trained.bundle_zip)
    if now["projection"] is not None and now["projection"] != saved.get("projection"):
        workspace.write_projection(run.projection, meta=wio.projection_meta(run))
    if now["results"] is not None and now["results"] != saved.get("results"):
        _, clusters, labels = _current_results(_reference_parts()[2])
        workspace.write_results(
            clusters=clusters(),
            resolution=float(s[state.RESOLUTION]),
            labels=labels() if now["results"]["labels"] is not None else None,
            key=now["results"],
        )
    workspace.write_state(
        wio.state_document(
            page=now["page"],
            settings=now["settings"],
            reference=now["reference"],
            dataset=now["dataset"],
        )
    )


def _sync_url() -> None:
    """Put the tab's workspace id into the URL (navigation drops query parameters)."""
    ws_id = current_id()
    if ws_id is not None and st.query_params.get(QUERY_KEY) != ws_id:
        st.query_params[QUERY_KEY] = ws_id


# --- links, notices, the problem page ------------------------------------------------------------
def share_link(ws_id: str, url_path: str = "") -> str:
    """The full URL of this analysis on the page at ``url_path`` ("" is the default page).

    The app's address comes from ``st.context.url`` (the browser's, so it is right behind a
    proxy or on hosted Streamlit) without any page part; the page is added here.
    """
    parts = urlsplit(st.context.url or "")
    base = parts.path.rstrip("/")
    for known in (*(Path(p).stem for p in PAGE_PATHS), "home"):
        if base.endswith("/" + known):
            base = base.removesuffix("/" + known)
            break
    path = f"{base}/{url_path}" if url_path else f"{base}/"
    query = urlencode({QUERY_KEY: ws_id})
    if not parts.netloc:  # no browser URL known (tests): a relative link
        return f"{path}?{query}"
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def sidebar(url_path: str = "") -> None:
    """The sidebar's workspace part: the link to copy, read-only and other notices."""
    ws_id = current_id()
    notice = st.session_state.get(state.WORKSPACE_NOTICE)
    if ws_id is None and notice is None:
        return
    if ws_id is not None and owned(ws_id):
        owner.remember()  # this browser keeps editing it after a reload
    with st.sidebar:
        if ws_id is not None:
            st.caption(":material/link: Copy link to this analysis")
            st.markdown(f"`{share_link(ws_id, url_path)}`")
            if not owned(ws_id):
                st.caption(
                    ":material/visibility: Shared analysis, read-only: your first change "
                    "saves a copy under a new link."
                )
            else:
                st.caption(f"Kept on this server for {_days()} after its last change.")
        if notice:
            st.info(notice, icon=":material/info:")


def _days() -> str:
    days = store().limits.max_age_seconds / 86400
    return f"{days:g} day{'s' if days != 1 else ''}"


def problem() -> tuple[str, str, str] | None:
    """The problem with the URL's workspace id, while the URL still carries it."""
    found = st.session_state.get(state.WORKSPACE_PROBLEM)
    if found is None or st.query_params.get(QUERY_KEY) != found[1]:
        return None
    return found


def problem_page(found: tuple[str, str, str]) -> None:
    """A clear page for a link that cannot be opened, with a way to start again."""
    kind, _, detail = found
    title, text = PROBLEMS[kind]
    st.title(title)
    st.error(" ".join(part for part in (text, detail) if part), icon=":material/link_off:")
    st.caption(f"Links to analyses work for {_days()} after the analysis was last changed.")
    if st.button("Start a new analysis", type="primary", icon=":material/add:"):
        st.session_state[state.WORKSPACE_PROBLEM] = None
        st.query_params.clear()
        st.switch_page(state.PAGE_DATA)


#: Page scripts a workspace may record (the URL path of each is its file's stem; the
#: default page, Reference, is the root).
PAGE_PATHS = state.ALL_PAGES


def page_path(url_path: str) -> str | None:
    """The page script behind a URL path ("" is the default page), or None."""
    if url_path == "":
        return state.PAGE_REFERENCE
    candidate = f"pages/{url_path}.py"
    return candidate if candidate in PAGE_PATHS and candidate != state.PAGE_REFERENCE else None
