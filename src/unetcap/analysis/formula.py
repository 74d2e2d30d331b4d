"""The analysis formulas (docs/design.md §11): the paper's OLS and GLM, split into terms and
reduced to what a grid identifies (`usable_formula`), and the patsy setting every fit uses.
Imports statsmodels and patsy only when a fit asks for them.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pandas as pd

from unetcap import UnetcapError
from unetcap.analysis.render import and_join, fmt_level
from unetcap.analysis.table import VARIABLES

PAPER_OLS = "DICE ~ ls + ls:Family + log(Dataset) + log(lr):ls:Family + log(reg)"
PAPER_GLM = "log(DICE) ~ ls + ls:Family + Dataset + lr:ls:Family + reg"


def split_formula(formula: str) -> tuple[str, list[str]]:
    """The left-hand side and the right-hand terms (split on top-level `+`) of a formula."""
    if formula.count("~") != 1:
        raise UnetcapError(f"analysis formula {formula!r}: needs exactly one '~'")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    terms = split_top(rhs, "+")
    if not lhs or not terms:
        raise UnetcapError(f"analysis formula {formula!r}: needs a response and at least one term")
    return lhs, terms


def term_variables(term: str) -> list[str]:
    """The formula variables (`ls`, `Family`, `Dataset`, `lr`, `reg`, `Backend`) a term uses."""
    return [v for v in VARIABLES if re.search(rf"(?<![\w.]){v}(?![\w.])", term)]


def single_level(data: pd.DataFrame) -> dict[str, object]:
    """The variables that take one value only in the data, with that value."""
    return {v: data[v].iloc[0] for v in VARIABLES if data[v].nunique() <= 1}


CATEGORICAL = ("ls", "Family", "Backend")


def usable_formula(formula: str, data: pd.DataFrame) -> tuple[str, list[str], list[str]]:
    """The formula reduced to what the data identifies, and a note for each change.

    A factor (`ls`, `Family`) with a single level in `data` is the constant: it is taken out
    of each interaction it is part of (`log(lr):ls:Family` with one family is `log(lr):ls`,
    `ls:Family` with one depth is `Family`); a term left empty, or repeating a term already
    kept, is dropped. A term with a numeric variable (`Dataset`, `lr`, `reg`) that takes a
    single value is dropped: its effect is not identified. Returns (formula, kept terms,
    notes); with no term left the formula is `lhs ~ 1`.
    """
    lhs, terms = split_formula(formula)
    constant = single_level(data)
    kept, notes = [], []
    for term in terms:
        flat = [v for v in term_variables(term) if v in constant]
        if not flat:
            kept.append(term)
            continue
        what = and_join([f"{v} ({fmt_level(constant[v])})" for v in flat])
        numeric = [v for v in flat if v not in CATEGORICAL]
        if numeric:
            values = and_join([f"{v} ({fmt_level(constant[v])})" for v in numeric])
            notes.append(
                f"Term `{term}` dropped: the grid has a single value of {values}, so its effect is not identified."
            )
            continue
        parts = [p for p in split_top(term, ":") if not set(term_variables(p)) <= set(flat)]
        reduced = ":".join(parts)
        if not parts:
            notes.append(f"Term `{term}` dropped: the grid has a single level of {what}.")
        elif reduced in kept:
            notes.append(
                f"Term `{term}` dropped: with a single level of {what} it is `{reduced}`, already in the formula."
            )
        else:
            notes.append(
                f"Term `{term}` reduced to `{reduced}`: the grid has a single level of {what}, "
                f"so the term keeps what varies."
            )
            kept.append(reduced)
    return f"{lhs} ~ {' + '.join(kept) if kept else '1'}", kept, notes


def split_top(text: str, sep: str) -> list[str]:
    """`text` split on `sep` outside parentheses, each piece stripped."""
    pieces, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            pieces.append(current.strip())
            current = ""
        else:
            current += ch
    pieces.append(current.strip())
    return [p for p in pieces if p]


@contextlib.contextmanager
def patsy_engine():
    """Fit with patsy, whose term names are the paper's (`ls[T.short]`)."""
    import statsmodels.formula

    before = statsmodels.formula.options.formula_engine
    statsmodels.formula.options.formula_engine = "patsy"
    try:
        yield
    finally:
        statsmodels.formula.options.formula_engine = before


FORMULA_ENV = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt}


@contextlib.contextmanager
def formula_errors(key: str, formula: str):
    """A formula that names an unknown variable, or gives infinite values (log of a zero
    reg), as a UnetcapError naming the config key."""
    import patsy
    from statsmodels.tools.sm_exceptions import MissingDataError

    try:
        yield
    except (patsy.PatsyError, MissingDataError, NameError, ValueError) as err:
        raise UnetcapError(
            f"{key} {formula!r}: cannot be fitted ({str(err).splitlines()[0]}). Its variables are "
            f"DICE, {', '.join(VARIABLES)}; a log() needs values > 0 (reg = 0 in the grid?)."
        ) from err
