"""Numbers and tables as the study prints them (docs/design.md §11): one number style for
Markdown, LaTeX and HTML, p-values as the paper prints them, and the CSV text every table is
written as (full precision).

A table is first a `Formatted` (text cells, a title and notes), then written with
`to_markdown`, `to_latex` or `to_html`: the cells are the same strings in each format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unetcap.common import named_paths, write_text_atomic


def write_outputs(texts: Mapping[str, str], outputs: Mapping[str, object], rule: str) -> list[Path]:
    """Write each text of `texts` (output name -> text) to the path `outputs` gives that name
    (a rule's named outputs), atomically; returns the paths in the order of `texts`. Raises
    UnetcapError naming every output `outputs` lacks and every name it has that `texts` does
    not know: the rule and the library name the same outputs, or nothing is written."""
    given = named_paths(outputs, texts, rule)
    for name, text in texts.items():
        write_text_atomic(given[name], text)
    return [given[name] for name in texts]


def csv_text(table: pd.DataFrame) -> str:
    """A table as the CSV files hold it: full precision, no index, "\\n" line ends."""
    return table.to_csv(index=False, lineterminator="\n")


def fmt_num(x, digits: int = 4) -> str:
    """A number as the paper's tables print it; blank when missing."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return ""
    x = float(x)
    if x != 0 and (abs(x) < 10 ** -(digits - 1) or abs(x) >= 1e6):
        return f"{x:.{digits - 2}e}"
    return f"{x:.{digits}f}"


P_FLOOR = 1e-22  # below it the paper prints "< 1e-22": doubles carry no more than that


def fmt_p(p) -> str:
    """A p-value as the paper prints it: 3 decimals, 2 significant digits in e-notation below
    0.001, and "< 1e-22" below that."""
    if p is None or not np.isfinite(p):
        return ""
    if p < P_FLOOR:
        return f"< {P_FLOOR:.0e}"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def stars(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


STARS_LEGEND = "Significance: *** p < 0.001, ** p < 0.01, * p < 0.05, . p < 0.1."


@dataclass
class Formatted:
    """A table as text cells, with a title and notes, for Markdown, LaTeX and HTML."""

    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str]
    align: str  # one of l/r per column
    label: str = ""
    header_tex: list[str] | None = None


def to_markdown(t: Formatted) -> str:
    lines = [
        f"**{t.title}**",
        "",
        "| " + " | ".join(t.header) + " |",
        "|" + "|".join("---:" if a == "r" else ":---" for a in t.align) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
    if t.notes:
        lines += [""] + [f"{n}  " for n in t.notes]
    return "\n".join(lines).rstrip() + "\n"


def _tex_escape(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    out = out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}")
    out = out.replace("< ", r"$<$ ").replace("`", "")
    for plain, tex in (("R²", "$R^2$"), ("η²", r"$\eta^2$"), ("α", r"$\alpha$"), ("Δ", r"$\Delta$"), ("±", r"$\pm$")):
        out = out.replace(plain, tex)
    return out


def to_latex(t: Formatted) -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    header = t.header_tex or [_tex_escape(h) for h in t.header]
    lines = [
        "% needs \\usepackage{booktabs}",
        r"\begin{table}[htbp]",
        r"\centering",
        r"\caption{" + _tex_escape(t.title) + "}",
    ]
    if t.label:
        lines.append(r"\label{" + t.label + "}")
    lines += [r"\begin{tabular}{" + t.align + "}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for row in t.rows:
        if row and row[0] == "Residuals":
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if t.notes:
        lines.append(
            r"\par\smallskip\parbox{\linewidth}{\footnotesize " + " ".join(_tex_escape(n) for n in t.notes) + "}"
        )
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(tables: list[Formatted], intro=(), outro=()) -> str:
    """A standalone HTML page with the tables (for the Snakemake report, which shows HTML
    but only offers CSV for download)."""
    import html

    css = (
        "body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse;"
        "margin:0.5em 0 0.5em 0}th,td{padding:3px 9px;border-bottom:1px solid #ddd}"
        "th{border-bottom:2px solid #444}td.r,th.r{text-align:right}td.l,th.l{text-align:left}"
        "tr.best td{font-weight:bold}p.note{color:#444;font-size:12px;margin:2px 0}"
        "h3{margin:1.2em 0 0.2em 0}"
    )
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><style>" + css + "</style></head><body>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in intro]
    for t in tables:
        parts.append(f"<h3>{html.escape(t.title)}</h3><table><thead><tr>")
        parts += [f"<th class='{a}'>{html.escape(h)}</th>" for h, a in zip(t.header, t.align)]
        parts.append("</tr></thead><tbody>")
        for row in t.rows:
            cls = " class='best'" if row and row[-1] == "yes" else ""
            parts.append(
                f"<tr{cls}>" + "".join(f"<td class='{a}'>{html.escape(c)}</td>" for c, a in zip(row, t.align)) + "</tr>"
            )
        parts.append("</tbody></table>")
        parts += [f"<p class='note'>{html.escape(n)}</p>" for n in t.notes]
    parts += [f"<p class='note'>{html.escape(p)}</p>" for p in outro]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def pre_html(title: str, text: str) -> str:
    """A standalone HTML page showing preformatted text."""
    import html

    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;"
        "margin:1em}pre{font-size:12px}</style></head><body>\n"
        f"<h3>{html.escape(title)}</h3>\n<pre>{html.escape(text)}</pre>\n</body></html>\n"
    )


def and_join(items) -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fmt_level(value) -> str:
    """A grid value as the paper writes it: 200, not 200.0; 0.001 as is."""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    return str(value)
