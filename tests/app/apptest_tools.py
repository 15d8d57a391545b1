"""Small AppTest helpers shared by the app tests: find an element or fail with what is there."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def checked(at: AppTest) -> AppTest:
    """``at`` after asserting that its last run raised nothing."""
    assert not at.exception, [e.value for e in at.exception]
    return at


def goto(at: AppTest, page: str) -> AppTest:
    """Switch to ``page`` (a script path), run it and check it."""
    return checked(at.switch_page(page).run())


def button(at: AppTest, label: str):
    """The button labelled ``label`` (the first, if several)."""
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def metric(at: AppTest, label: str) -> str:
    """The value of the metric labelled ``label``."""
    values = {m.label: m.value for m in at.metric}
    assert label in values, f"no metric {label!r}; metrics: {list(values)}"
    return values[label]
