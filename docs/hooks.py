"""Build-time hooks of the documentation site (``hooks:`` and a griffe extension in mkdocs.yml).

* One page per ``mechgraph`` subcommand, rendered from the real typer app at every build
  (:func:`on_config` adds them to the nav, :func:`on_files` to the site), so the pages can
  never go stale: a new command gets a page, a changed option changes its page.
* ``<!-- mechgraph:all -->`` in a page becomes the table of ``mechgraph.__all__`` with a link
  to where each name is documented (:func:`on_page_markdown`); a name documented nowhere
  is a broken link, which fails ``mkdocs build --strict``.
* :class:`RstToMarkdown`, a griffe extension: the docstrings are numpydoc with a little
  reStructuredText in them (Sphinx roles such as ``:func:`name```, bare doctest blocks,
  ``::`` literal blocks, simple ``====`` tables) and constants documented by ``#:``
  comments. mkdocstrings renders Markdown, so these are rewritten before rendering: roles
  become cross-references (unresolvable ones stay plain code), doctests and literal blocks
  fenced code, tables Markdown tables, a ``#:`` comment its constant's docstring. The
  source files are not touched.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from pathlib import Path

import griffe

# --- the command-line pages ------------------------------------------------------------

#: The guide page of each command (no link for a command missing here or a page not written).
GUIDES = {
    "segment": ("Foundation: segmenters", "foundation.md#segmenters"),
    "extract": ("Foundation", "foundation.md"),
    "info": ("Foundation: the store", "foundation.md#the-store"),
    "run": ("The pipeline", "pipeline.md"),
    "demo": ("Foundation", "foundation.md"),
    "label": ("Labels", "labels.md"),
    "probe": ("Probes", "probes.md"),
    "importance": ("Sentence importance", "importance.md"),
    "graph": ("Reasoning graphs", "graphs.md"),
    "weights": ("Token weights", "weights.md"),
    "phases": ("Phases across RL training", "phases.md"),
    "report": ("The run report", "report.md"),
}
CLI_INDEX = "cli/index.md"

#: Nav pages being written elsewhere: left out of the nav (with a log line) while absent,
#: instead of failing the strict build. Drop an entry once its page exists.
PENDING_PAGES = {"report.md"}

_pages: dict[str, str] = {}


def _escape(text: str) -> str:
    """Escape Markdown (and table) syntax outside backtick code spans."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):
        s = parts[i].replace("\\", "\\\\")
        for ch in "*_[]|":
            s = s.replace(ch, "\\" + ch)
        parts[i] = s.replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _param_rows(params, ctx) -> list[str]:
    rows = []
    for p in params:
        if getattr(p, "hidden", False):
            continue
        record = p.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        default = ""
        m = re.search(r"\s*\[default: (.*)\]\s*$", help_text)
        if m:
            default, help_text = m.group(1), help_text[: m.start()]
        required = bool(re.search(r"\s*\[required\]\s*$", help_text))
        help_text = re.sub(r"\s*\[required\]\s*$", "", help_text)
        default = "required" if required else _code(default)
        rows.append(f"| {_code(names)} | {default} | {_escape(help_text.strip())} |")
    return rows


def render_command(app_name: str, name: str, cmd, group_ctx, docs_dir: str = "docs") -> str:
    """The Markdown page of one subcommand: help, usage, arguments and options."""
    from typer import _click

    ctx = _click.Context(cmd, info_name=name, parent=group_ctx)
    lines = [f"# `{app_name} {name}`", ""]
    help_text = (cmd.help or "").split("\f")[0].strip()
    if help_text:
        lines += [_escape(help_text), ""]
    if name in GUIDES and (Path(docs_dir) / GUIDES[name][1].split("#")[0]).is_file():
        title, page = GUIDES[name]
        lines += [f"Guide: [{title}](../{page}).", ""]
    lines += ["```text", cmd.get_usage(ctx), "```", ""]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name != "argument"]
    for title, params in (("Arguments", args), ("Options", opts)):
        rows = _param_rows(params, ctx)
        if rows:
            lines += [f"## {title}", "", "| name | default | meaning |", "| --- | --- | --- |"]
            lines += [*rows, ""]
    lines += [
        "*Generated at build time from the command's own definition in "
        "`mechgraph/cli.py` (`mechgraph " + name + " --help` prints the same).*",
        "",
    ]
    return "\n".join(lines)


def render_cli_pages(docs_dir: str = "docs") -> dict[str, str]:
    """``{src_uri: markdown}`` for the command-line index and one page per subcommand."""
    import typer
    from typer import _click

    from mechgraph import cli

    group = typer.main.get_command(cli.app)
    ctx = _click.Context(group, info_name="mechgraph")
    pages = {}
    index = [
        "# Command line",
        "",
        _escape((group.help or "").strip()),
        "",
        "Every command checks its output paths before any work, writes its outputs "
        "atomically, prints a user error as one `error: ...` line on stderr with exit "
        "status 1 (2 for usage errors).",
        "",
        "```text",
        group.get_usage(ctx),
        "```",
        "",
        "| command | what it does |",
        "| --- | --- |",
    ]
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        pages[f"cli/{name}.md"] = render_command("mechgraph", name, cmd, ctx, docs_dir)
        summary = cmd.get_short_help_str(limit=300)
        index.append(f"| [`mechgraph {name}`]({name}.md) | {_escape(summary)} |")
    pages[CLI_INDEX] = "\n".join([*index, ""])
    return pages


def _cli_section(nav: list) -> list | None:
    """The nav list that holds the command-line index page."""
    for item in nav:
        values = item.values() if isinstance(item, dict) else [item]
        for v in values:
            if v == CLI_INDEX:
                return nav
            if isinstance(v, list) and (found := _cli_section(v)) is not None:
                return found
    return None


def _drop_pending(nav: list, docs_dir: str) -> list:
    import logging
    import os

    kept = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            item = {next(iter(item)): _drop_pending(value, docs_dir)}
        elif value in PENDING_PAGES and not os.path.exists(os.path.join(docs_dir, value)):
            logging.getLogger("mkdocs.hooks").info("nav: %s is not written yet, left out", value)
            continue
        kept.append(item)
    return kept


def on_config(config, **kwargs):
    global _pages
    _pages = render_cli_pages(config["docs_dir"])
    config["nav"] = _drop_pending(config["nav"] or [], config["docs_dir"])
    section = _cli_section(config["nav"] or [])
    if section is not None:
        known = {next(iter(i.values())) if isinstance(i, dict) else i for i in section}
        for uri in _pages:
            if uri not in known:
                section.append({f"mechgraph {uri[4:-3]}": uri})
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, content in _pages.items():
        if files.get_file_from_path(uri) is not None:
            raise RuntimeError(f"docs/{uri} exists; command pages are generated, remove it")
        files.append(File.generated(config, uri, content=content))
    return files


# --- the table of mechgraph.__all__ ----------------------------------------------------

ALL_MARKER = "<!-- mechgraph:all -->"


def render_all_table() -> str:
    """The table of ``mechgraph.__all__``: each name linked to where it is documented."""
    import inspect

    import mechgraph

    rows = ["| name | kind | module | summary |", "| --- | --- | --- | --- |"]
    for name in mechgraph.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(mechgraph, name)
        module = getattr(mechgraph, "_WHERE", {}).get(name) or obj.__module__
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "data"
        doc = (inspect.getdoc(obj) or "").strip().split("\n\n")[0].replace("\n", " ")
        doc = _escape_cell(convert_roles(doc, lambda t: None))
        rows.append(f"| [`mg.{name}`][{module}.{name}] | {kind} | `{module}` | {doc} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if ALL_MARKER in markdown:
        markdown = markdown.replace(ALL_MARKER, render_all_table())
    return markdown


# --- reStructuredText bits of the docstrings -> Markdown ---------------------------------

_ROLE = re.compile(r":(?:py:)?(func|class|mod|meth|attr|data|exc|obj|const):`([^`]+)`")
_SECTION_RULE = re.compile(r"^-{3,}\s*$")
_TABLE_RULE = re.compile(r"^\s*=+(?:\s+=+)+\s*$")
_TEXT_SECTIONS = {"", "notes", "references", "see also", "warnings", "examples", "example"}

#: Our packages; their lazily re-exported names (``_LAZY``) are resolved to their modules.
_ROOTS = ("mechgraph", "probes")


@functools.cache
def _lazy_names(package: str) -> dict[str, str]:
    """``{name: module}`` of a package's lazily re-exported names, read from its source."""
    if package not in _ROOTS or (spec := importlib.util.find_spec(package)) is None:
        return {}
    for node in ast.parse(Path(spec.origin).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets
        ):
            table = ast.literal_eval(node.value)
            return {name: mod for mod, names in table.items() for name in names}
    return {}


def _canonical(path: str) -> str:
    """``mechgraph.Store`` -> ``mechgraph.store.Store`` (where the name is documented)."""
    root, _, rest = path.partition(".")
    first, _, tail = rest.partition(".")
    lazy = _lazy_names(root)
    if first in lazy and (spec := importlib.util.find_spec(root)) is not None:
        folder = Path(spec.origin).parent
        if not ((folder / f"{first}.py").exists() or (folder / first).is_dir()):
            return ".".join(x for x in (lazy[first], first, tail) if x)
    return path


def _resolve(obj, target: str) -> str | None:
    """The documented path of a role's target seen from ``obj``, or None (plain code)."""
    head, _, rest = target.partition(".")
    if head not in _ROOTS:
        try:
            head = obj.resolve(head)
        except Exception:  # griffe's NameResolutionError: not in scope
            lazy = _lazy_names(obj.package.name)
            if head not in lazy:
                return None
            head = f"{lazy[head]}.{head}"
    return _canonical(f"{head}.{rest}" if rest else head)


def convert_roles(text: str, resolve) -> str:
    """Sphinx roles -> optional autorefs (plain code when the target is unknown)."""

    def one(m: re.Match) -> str:
        body = m.group(2).strip()
        title = None
        if (t := re.match(r"^(.*?)\s*<([^>]+)>$", body)) is not None:
            title, body = t.group(1), t.group(2)
        short = body.startswith("~")
        target = body.lstrip("~").lstrip(".")
        shown = title or (target.rpartition(".")[2] if short else target)
        ident = resolve(target)
        if ident is None:
            return f"`{shown}`"
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    return _ROLE.sub(one, text)


def _escape_cell(text: str) -> str:
    """Escape ``|``, ``<`` and ``>`` outside code spans (a Markdown table cell)."""
    parts = re.split(r"(``[^`]*``|`[^`]*`)", text)
    for k in range(0, len(parts), 2):
        parts[k] = parts[k].replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts)


def _table(lines: list[str], i: int, resolve) -> tuple[int, list[str]]:
    """An RST simple table starting at ``lines[i]`` -> (next line, Markdown lines).

    The table runs to the first blank line and ends with a rule; with three rules the rows
    between the first two are the header, with two the first row is. A row whose first
    column is blank continues the row above. ``(i, [])`` when it is not such a table.
    """
    end = i
    while end < len(lines) and lines[end].strip():
        end += 1
    block = lines[i:end]
    rules = [k for k, b in enumerate(block) if b.strip() == block[0].strip()]
    if len(rules) not in (2, 3) or rules[-1] != len(block) - 1:
        return i, []
    cols = [m.start() for m in re.finditer(r"=+", block[0])]

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in zip(cols, [*cols[1:], None], strict=True)]

    header = [cells(b) for b in block[1 : rules[1]]] if len(rules) == 3 else []
    body: list[list[str]] = []
    for b in block[rules[-2] + 1 : rules[-1]]:
        c = cells(b)
        if body and not c[0]:
            body[-1] = [f"{x} {y}".strip() for x, y in zip(body[-1], c, strict=True)]
        else:
            body.append(c)
    if header:
        head = [" ".join(x).strip() for x in zip(*header, strict=True)]
    elif body:
        head, body = body[0], body[1:]
    else:
        return i, []

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(convert_roles(_escape_cell(c), resolve) for c in row) + " |"

    return end, [fmt(head), "|" + " --- |" * len(cols), *map(fmt, body)]


def _literal_block(lines: list[str], i: int) -> tuple[int, list[str]]:
    """``text::`` + an indented block at ``lines[i]`` -> (next line, the block's lines)."""
    j = i + 1
    while j < len(lines) and not lines[j].strip():
        j += 1
    k = j
    while k < len(lines) and (not lines[k].strip() or lines[k].startswith(" ")):
        k += 1
    while k > j and not lines[k - 1].strip():
        k -= 1
    if k == j:
        return i, []
    block = lines[j:k]
    indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
    return k, [b[indent:] for b in block]


def convert_docstring(text: str, resolve) -> str:
    """The Markdown form of one (cleaned) numpydoc docstring; see the module docstring."""
    lines = text.split("\n")
    out: list[str] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _SECTION_RULE.match(nxt):
            section = line.strip().lower()
            out += [line, nxt]
            i += 2
            continue
        if section in _TEXT_SECTIONS and not line.startswith(" "):
            if line.startswith(">>>") and section not in ("examples", "example"):
                j = i
                while j < len(lines) and lines[j].strip():
                    j += 1
                out += ["", "```pycon", *lines[i:j], "```", ""]
                i = j
                continue
            if _TABLE_RULE.match(line):
                j, table = _table(lines, i, resolve)
                if table:
                    out += ["", *table, ""]
                    i = j
                    continue
            if line.rstrip().endswith("::") and not line.startswith(".."):
                j, block = _literal_block(lines, i)
                if block:
                    # RST: "Text::" -> "Text:", "Text ::" and a bare "::" -> "Text"
                    head = line.rstrip()[:-2]
                    head = head.rstrip() if head.endswith(" ") or not head else head + ":"
                    out += [convert_roles(head, resolve), ""]
                    out += ["```text", *block, "```", ""]
                    i = j
                    continue
        out.append(convert_roles(line, resolve))
        i += 1
    return "\n".join(out)


def _comment_docstring(attr) -> str:
    """The ``#:`` comment lines right above an attribute (Sphinx's convention), joined."""
    try:
        lines = attr.module.lines
    except Exception:  # no source (a compiled or built-in module)
        return ""
    out: list[str] = []
    k = (attr.lineno or 0) - 2
    while 0 <= k < len(lines) and lines[k].strip().startswith("#:"):
        out.insert(0, lines[k].strip()[2:].strip())
        k -= 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """A griffe extension: rewrite the RST parts of our docstrings as Markdown (see module)."""

    def on_package(self, *, pkg, loader, **kwargs) -> None:
        stack = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is None and obj.is_attribute:
                comment = _comment_docstring(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
            if obj.docstring is not None:
                obj.docstring.value = convert_docstring(
                    obj.docstring.value, lambda t, o=obj: _resolve(o, t)
                )
            stack += [m for m in obj.members.values() if not m.is_alias]
