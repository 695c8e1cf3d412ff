"""mkdocs hook: the docstrings' Sphinx roles (:func:`x`, :class:`~a.B`, :meth:`t <a.b>`) are
shown as code, as Sphinx would show them, instead of raw role markup."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):<code>(.*?)</code>")


def _shown(match: re.Match) -> str:
    text = match.group(1)
    if " &lt;" in text:  # "title <target>": the title
        text = text.split(" &lt;", 1)[0]
    elif text.startswith("~"):  # "~a.b.C": the last part
        text = text[1:].rsplit(".", 1)[-1]
    return f"<code>{text}</code>"


def on_page_content(html: str, **kwargs) -> str:
    return ROLE.sub(_shown, html)
