"""What the server keeps of an analysis, for how long, who can read it, and deleting it now.

The About page draws :func:`section`; the numbers come from the running store's limits
(an operator sets them with ``SCEMBED_WORKSPACE_DAYS`` and the size budgets), so the page
states what this server actually does. :func:`delete_current` removes the tab's workspace
folder from disk at once and drops the analysis from the tab, so nothing writes it again.
"""

from __future__ import annotations

import streamlit as st

from scembed_app import deployment, state, workspaces

DELETED_NOTICE = (
    "The analysis was deleted from this server: its files are gone and its link no longer "
    "opens. Load a dataset to start a new one."
)


def _limits_text() -> tuple[str, str, str]:
    limits = workspaces.store().limits
    days = limits.max_age_seconds / 86400
    return (
        f"{days:g} day{'s' if days != 1 else ''}",
        f"{limits.max_bytes / 2**20:,.0f} MB",
        f"{limits.max_total_bytes / 2**30:,.1f} GB",
    )


def section() -> None:
    """The About page's "Your data on this server" section, with the delete button."""
    days, one, total = _limits_text()
    where = (
        "in a temporary folder of the server"
        if deployment.is_hosted()
        else f"in `{workspaces.store().root}` on the computer running the app"
    )
    st.markdown(
        f"""
- **What is stored.** From your first dataset on, the analysis is kept on the server's disk
  as a *workspace*: the dataset as read (an `.h5ad` file), the reference's name and
  fingerprint (a reference trained here: its bundle), every setting, the projection and map
  coordinates, clusters and labels. An upload is read from a temporary file that is deleted
  right after reading; the workspace keeps its own copy of the data.
- **Where.** {where}, one folder per analysis named by its random 128-bit id.
- **For how long.** {days} after the analysis was last changed (set by the server's
  operator). After that its link stops working and its files are deleted the next time the
  server starts. One analysis may take {one}, all of them together {total}; when they are
  over that, the least recently changed are deleted first.
- **Who can read it.** Anyone who has its link (the id cannot be guessed), and whoever runs
  the server. Only the browser that created it can change it (a secret cookie, never in the
  link); others who change it get their own copy under a new link.
- **Deleting.** *Delete this analysis now* removes its files from the server at once.
"""
    )
    ws_id = workspaces.current_id()
    if ws_id is None:
        notice = st.session_state.get(state.WORKSPACE_NOTICE)
        if notice == DELETED_NOTICE:
            st.success(notice, icon=":material/delete:")
        else:
            st.caption("Nothing of yours is stored yet: no dataset has been loaded in this tab.")
        return
    if not workspaces.owned(ws_id):
        st.caption(
            "This analysis was shared with you: only the browser that created it can delete "
            "it. A copy you make by changing it is yours to delete."
        )
        return
    if st.button("Delete this analysis now", icon=":material/delete_forever:"):
        _confirm()


@st.dialog("Delete this analysis?")
def _confirm() -> None:
    st.write(
        "Its dataset, projection, clusters, labels and settings are removed from the server "
        "now, and its link stops working, for you and everyone you shared it with. This "
        "cannot be undone; the Export page downloads the results first if you need them."
    )
    delete, cancel = st.columns(2)
    if delete.button("Delete permanently", type="primary", icon=":material/delete_forever:"):
        delete_current()
        st.rerun()
    if cancel.button("Keep it"):
        st.rerun()


def delete_current() -> int:
    """Remove this tab's workspace from disk and drop the analysis from the tab.

    Returns the bytes freed. Only for a workspace this browser owns; the tab then starts
    afresh (no dataset, no projection, no id in the URL), so nothing saves it again.
    """
    s = st.session_state
    ws_id = workspaces.current_id()
    if ws_id is None or not workspaces.owned(ws_id):
        return 0
    freed = workspaces.store().remove(ws_id)
    s[state.OWNED] = [other for other in s[state.OWNED] if other != ws_id]
    s[state.WORKSPACE] = None
    s[state.SAVED] = {}
    s[state.STORED_RESULTS] = None
    s[state.DATASET] = None
    s[state.PROJECTION] = None
    s[state.WORKSPACE_NOTICE] = DELETED_NOTICE
    st.query_params.pop(workspaces.QUERY_KEY, None)
    return freed
