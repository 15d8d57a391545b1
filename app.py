"""scEmbed dashboard: the entrypoint (``streamlit run app.py``).

The router (page declarations, titles, icons, order, the shared sidebar) lives in
:mod:`scembed_app.router`, so that a page Streamlit runs on its own (a deep link on a freshly
started server) can hand over to it. All page content lives in ``pages/``; UI helpers in
``scembed_app/``; the science in ``scembed_core/``.
"""

from scembed_app import router

router.run()
