"""scEmbed dashboard: the router.

Declares the pages (titles, icons, order) in one place, draws the shared sidebar and runs
the selected page. All page content lives in ``pages/``; UI helpers in ``scembed_app/``;
the science in ``scembed_core/``.
"""

import streamlit as st

from scembed_app import cached, state, widgets

st.set_page_config(
    page_title="scEmbed",
    page_icon=":material/scatter_plot:",
    layout="wide",
    menu_items={"About": "scEmbed: projection and annotation of scATAC-seq cells."},
)
state.init_state()

PAGES = {
    "Analyse": [
        st.Page(state.PAGE_REFERENCE, title="Reference", icon=":material/hub:", default=True),
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
    "Help": [st.Page(state.PAGE_ABOUT, title="About", icon=":material/info:")],
}

page = st.navigation(PAGES)
try:
    page.run()
finally:
    widgets.sidebar_summary()  # after the page, so it shows what this run just loaded
    # once per process, after the first page is drawn: compile/load the map kernels in the
    # background so the first "Project cells" does not wait for them
    cached.start_kernel_warmup()
