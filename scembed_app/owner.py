"""The browser's owner secret: who may keep editing a workspace after a reload.

A workspace's link (``?ws=<id>``) lets anyone *read* the analysis. Editing belongs to the
browser that created it: each browser holds a random 256-bit secret in a first-party cookie
(:data:`COOKIE`), and a workspace's manifest keeps only the secret's sha256
(:func:`token`). A new session (a reload, a server restart, a bookmark) reads the cookie
from the connection's request (``st.context.cookies``) and owns every workspace whose
stored hash matches; anyone else, with the same link but another browser, gets the
analysis read-only and their first change forks it.

The secret is never in a URL, a share link, a log or the workspace folder. Streamlit
cannot set a cookie from Python, so the first session of a browser makes a secret and a
tiny script (:func:`remember`) stores it in the browser; it only sets the cookie when the
browser has none (two first tabs opened at once keep the first one's).
"""

from __future__ import annotations

import hashlib
import re
import secrets

import streamlit as st

COOKIE = "scembed_owner"
SECRET_PATTERN = re.compile(r"[0-9a-f]{64}")
#: How long the browser keeps the cookie (the longest browsers allow, 400 days); a
#: workspace itself expires on the server's own schedule.
COOKIE_SECONDS = 400 * 86400
_SECRET = "owner_secret"  # session-state key: (secret, whether it came from the cookie)


def _cookie_value() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # noqa: BLE001 - no request (bare AppTest): no cookie
        return None
    return value if isinstance(value, str) and SECRET_PATTERN.fullmatch(value) else None


def _session_secret() -> tuple[str, bool]:
    found = st.session_state.get(_SECRET)
    if found is None:
        cookie = _cookie_value()
        found = (cookie, True) if cookie else (secrets.token_hex(32), False)
        st.session_state[_SECRET] = found
    return found


def token() -> str:
    """The sha256 of this browser's owner secret (what a workspace's manifest stores)."""
    return hashlib.sha256(_session_secret()[0].encode()).hexdigest()


def remember() -> None:
    """Store this session's secret in the browser, unless the browser sent it already.

    Draws an invisible script (in the sidebar) that sets the cookie only when the browser
    has none, so it never replaces another tab's secret.
    """
    secret, from_cookie = _session_secret()
    if from_cookie:
        return
    script = (
        "<script>(function(){"
        f"if(document.cookie.split('; ').some(function(c){{return c.indexOf('{COOKIE}=')===0;}}))"
        "return;"
        f"var c='{COOKIE}={secret}; path=/; max-age={COOKIE_SECONDS}; SameSite=Strict';"
        "if(location.protocol==='https:')c+='; Secure';"
        "document.cookie=c;})();</script>"
    )
    with st.sidebar:
        st.html(script, unsafe_allow_javascript=True, width="content")
