"""UI support for the Streamlit app: session state, cached engine calls, Plotly figures.

Imports streamlit; holds no science (that is :mod:`scembed_core`). Modules: ``state``
(session-state keys and page guards), ``cached`` (``st.cache_*`` wrappers), ``results``
(clusters/labels shared by pages), ``figures`` (the engine's ``se.pl`` builders), ``progress``
(engine progress callback -> Streamlit), ``uploads`` and ``exports`` (bytes in and out,
no Streamlit), ``widgets`` (shared UI pieces), ``catalog`` (links, hub model list).
"""
