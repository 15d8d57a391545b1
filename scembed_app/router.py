"""The router: the app's pages, the frame around them, and the hand-over every page starts with.

``app.py`` (the file ``streamlit run`` starts) calls :func:`run`: page config, session-state
defaults, ``st.navigation`` with the pages' titles and icons, the selected page, the sidebar
summary. Every script in ``pages/`` starts with :func:`start_page` before anything else.

Why the hand-over: the repository has a top-level ``pages/`` folder, so Streamlit starts in its
legacy multipage mode and stays in it until the first ``st.navigation`` call in the process
(``PagesManager.uses_pages_directory``). In that mode a URL such as ``/data`` runs
``pages/data.py`` alone, without ``app.py``, under a navigation made of file names. A freshly
started server (every wake-up of a hosted app) therefore meets a bookmark, a shared link or a
refresh without its router. :func:`start_page` sees that the router is not running, runs it
(the router's ``st.navigation`` selects the same page by its URL path, so the page runs once,
inside the router) and stops the stray run. From then on the process is in ``st.navigation``
mode for every session. The legacy navigation itself is sent before any of our code runs, so
``.streamlit/config.toml`` hides it (``client.showSidebarNavigation = false``) and :func:`run`
turns the sidebar navigation back on for its own ``st.navigation``: no navigation of file
names ever shows, not even for a moment. ``tests/app/test_deeplinks.py`` checks all of it.
"""

from __future__ import annotations

import threading

import streamlit as st

from scembed_app import state

_run = threading.local()  # per script thread: is the router running a page right now?


def pages() -> dict[str, list[st.Page]]:
    """The navigation: sections of pages with their titles, icons and order.

    The default page (Reference) lives at the root URL; ``/reference`` (the URL Streamlit's
    legacy mode gives ``pages/reference.py``, so bookmarks may hold it) is a hidden alias
    that switches to it instead of showing "Page not found".
    """
    home = st.Page(
        state.PAGE_REFERENCE,
        title="Reference",
        icon=":material/hub:",
        default=True,
        url_path="home",  # internal only: the default page's public URL is the root
    )

    def reference_alias() -> None:
        st.switch_page(home)

    return {
        "Analyse": [
            home,
            st.Page(state.PAGE_DATA, title="Data", icon=":material/upload_file:"),
            st.Page(state.PAGE_PROJECT, title="Project", icon=":material/scatter_plot:"),
            st.Page(state.PAGE_CLUSTERS, title="Clusters", icon=":material/bubble_chart:"),
            st.Page(state.PAGE_ANNOTATE, title="Annotation", icon=":material/label:"),
        ],
        "Build and share": [
            st.Page(state.PAGE_TRAIN, title="Train", icon=":material/model_training:"),
            st.Page(state.PAGE_EXPORT, title="Export", icon=":material/download:"),
            st.Page(state.PAGE_ATLAS, title="Atlas results", icon=":material/public:"),
        ],
        "Help": [
            st.Page(state.PAGE_ABOUT, title="About", icon=":material/info:"),
            st.Page(reference_alias, title="Reference", url_path="reference", visibility="hidden"),
        ],
    }


def run() -> None:
    """Draw the frame and run the page the URL asks for (the body of ``app.py``)."""
    st.set_page_config(
        page_title="scEmbed",
        page_icon=":material/scatter_plot:",
        layout="wide",
        menu_items={"About": "scEmbed: projection and annotation of scATAC-seq cells."},
    )
    state.init_state()
    if st.get_option("client.showSidebarNavigation") is False:
        # config.toml hides the legacy navigation of file names a fresh server draws before
        # this router runs; the router's own navigation is the one to show (process-wide).
        st.set_option("client.showSidebarNavigation", True)
    page = st.navigation(pages())
    # heavy imports only after the navigation is sent
    from scembed_app import workspaces

    path = workspaces.page_path(page.url_path)
    target = workspaces.open_from_url(path)  # a new session opened with a workspace link
    if target is not None:
        st.switch_page(target, query_params={workspaces.QUERY_KEY: workspaces.current_id()})
    problem = workspaces.problem()  # a link that cannot be opened: explained instead
    outer = getattr(_run, "routing", False)
    _run.routing = True
    try:
        if problem is None:
            from scembed_app.stopping import stoppable

            with stoppable():  # a rerun, a closed tab or the time budget ends engine work
                page.run()
        else:
            workspaces.problem_page(problem)
    except state.PageStop:
        pass  # a guard or the page itself ended this run early (state.stop_page)
    finally:
        _run.routing = outer
        from scembed_app import cached, widgets

        # once per process, after the first page is drawn: compile/load the map kernels in
        # the background so the first "Project cells" does not wait for them (before the
        # sidebar, which draws nothing once a page has called st.stop())
        cached.start_kernel_warmup()
        if st.session_state.get(state.REFERENCE_SPEC) == "default":
            from scembed_app import quickref

            quickref.start_projection_warmup()  # pooling kernels, clustering libraries
        if problem is None:
            workspaces.save(path)  # what this run changed, before the sidebar shows the link
        widgets.sidebar_summary()  # after the page, so it shows what this run just loaded
        workspaces.sidebar(page.url_path)
        from scembed_app.memory import release_freed_memory

        release_freed_memory()  # what this run freed goes back to the system, not kept


def start_page() -> None:
    """First call of every page: continue inside the router, or hand over to it and stop.

    Streamlit runs a page without the router only in its legacy ``pages/`` mode, i.e. in the
    first run(s) of a fresh server (see the module docstring). Then the router is run here,
    which runs this page once more inside it, and this stray run stops.
    """
    if getattr(_run, "routing", False):
        return
    run()
    st.stop()
