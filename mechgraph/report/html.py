"""The report page: escaping, tables, figure boxes, sections and the whole document.

One self-contained file: the stylesheet, the script and plotly.js are inlined once, the
data is one JSON document in ``<script type="application/json" id="mg-data">``; the
page loads nothing at view time.

Examples
--------
>>> esc("<b> & 'x'")
'&lt;b&gt; &amp; &#x27;x&#x27;'
>>> table(["a", "b"], [[1, 2.34567]])
'<table class="tbl"><thead><tr><th class="l">a</th><th>b</th></tr></thead><tbody><tr><td class="l">1</td><td class="n">2.346</td></tr></tbody></table>'
"""

from __future__ import annotations

import html as _html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mechgraph.report.assets import CSS, JS

__all__ = ["SECTIONS", "data_script", "esc", "fig_box", "fmt", "page", "section", "table"]

#: Section ids and titles, in page order (the ids are fixed: tests and links use them).
SECTIONS = (
    ("summary", "Summary"),
    ("trace-viewer", "Trace viewer"),
    ("matrices", "Importance matrices"),
    ("graph", "Reasoning graphs"),
    ("probe-sweep", "Probe sweep"),
    ("phases", "Phases across checkpoints"),
)


def esc(x: Any) -> str:
    """HTML-escaped text of ``x``."""
    return _html.escape(str(x), quote=True)


def fmt(v: Any, digits: int = 4) -> str:
    """A number rounded for reading (``digits`` significant digits); text as is.

    Examples
    --------
    >>> fmt(0.000123456), fmt(1234.5678), fmt(5093.2, 3), fmt(float("nan")), fmt(None), fmt(True)
    ('0.0001235', '1235', '5093', '—', '—', 'yes')
    """
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if not math.isfinite(f):
        return "—"
    if f != 0 and (abs(f) < 1e-4 or abs(f) >= 1e6):
        return f"{f:.{digits - 1}e}"
    if abs(f) >= 10**digits:  # 5093.2 -> "5093", not "5.09e+03"
        return f"{f:.0f}"
    return f"{f:.{digits}g}"


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    left: int = 1,
    row_attrs: Sequence[str] | None = None,
    id: str | None = None,
    wrap: Sequence[int] = (),
) -> str:
    """An HTML table; the first ``left`` columns are left-aligned text, the rest numbers.

    Columns whose index is in ``wrap`` hold long text that wraps.
    """
    h = "".join(
        f'<th class="l">{esc(c)}</th>' if i < left else f"<th>{esc(c)}</th>"
        for i, c in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cells = "".join(
            f'<td class="{"w" if i in wrap else "l" if i < left else "n"}">{esc(fmt(v))}</td>'
            for i, v in enumerate(row)
        )
        attrs = f" {row_attrs[r]}" if row_attrs else ""
        body.append(f"<tr{attrs}>{cells}</tr>")
    ident = f' id="{esc(id)}"' if id else ""
    return (
        f'<table class="tbl"{ident}><thead><tr>{h}</tr></thead><tbody>{"".join(body)}'
        "</tbody></table>"
    )


def fig_box(key: str, *, per_trace: bool = False) -> str:
    """A box that the script fills with figure ``key`` (or its why-empty message)."""
    attr = "data-tfig" if per_trace else "data-fig"
    return (
        f'<div class="figbox" {attr}="{esc(key)}" id="fig-{esc(key)}">'
        '<div class="plot"></div><p class="why" hidden></p></div>'
    )


def empty(why: str) -> str:
    """The paragraph an empty section (or part of one) shows: why it is empty."""
    return f'<p class="empty">{esc(why)}</p>'


def section(ident: str, title: str, lead: str, body: str) -> str:
    return (
        f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>'
        f'<p class="lead">{esc(lead)}</p>{body}</section>'
    )


def details(summary: str, obj: Any) -> str:
    """A collapsed ``<details>`` holding ``obj`` as indented JSON."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=str)
    return (
        f"<details><summary>{esc(summary)}</summary><pre class='json'>{esc(text)}</pre></details>"
    )


def cards(items: Mapping[str, Any]) -> str:
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><b>{esc(k)}</b><span>{esc(v)}</span></div>'
            for k, v in items.items()
        )
        + "</div>"
    )


def data_script(data: Mapping[str, Any]) -> str:
    """The page's data as a JSON script element (``</`` escaped so it cannot close it)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    text = text.replace("</", "<\\/").replace("<!--", "<\\!--")
    return f'<script type="application/json" id="mg-data">{text}</script>'


def page(title: str, sections: Sequence[str], data: Mapping[str, Any], plotly_js: str) -> str:
    """The whole document: head, navigation, sections, then data, plotly.js and the script."""
    nav = "".join(f'<a href="#{i}">{esc(t)}</a>' for i, t in SECTIONS)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1>{nav}</header><main>'
        + "".join(sections)
        + '</main><div id="mg-tooltip" hidden></div>'
        + data_script(data)
        + f"<script>{plotly_js}</script><script>{JS}</script></body></html>\n"
    )
