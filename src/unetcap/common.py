"""What every stage shares: writing files so that no reader (and no job killed midway)
ever sees half of one, collecting every bad input before raising, running a function over
items in worker processes, and the sample and index tables (docs/contracts.md).

Every file the library writes goes through `atomic_path` (one file) or `atomic_dir` (a
folder): the content goes to a temporary name beside its destination (`tmp_path`) and is
renamed into place only when complete; on failure the temporary is removed and the
destination keeps what it had.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from unetcap import UnetcapError


def tmp_path(path) -> Path:
    """The temporary name `atomic_path` writes `path` under: hidden, beside it, with its
    suffix kept (writers such as Keras choose the format from it): `.model.tmp.keras`."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


@contextmanager
def atomic_path(path, sync: bool = True) -> Iterator[Path]:
    """Yields the temporary path to write `path` under; renames it onto `path` when the
    block ends without an exception (after an fsync, unless `sync` is False), removes it
    when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path, data: bytes) -> None:
    """`data` written to `path` through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    """`text` written to `path` in UTF-8 through `atomic_path`."""
    write_bytes_atomic(path, text.encode("utf-8"))


@contextmanager
def atomic_dir(out) -> Iterator[Path]:
    """Yields an empty temporary folder beside `out` (with the umask's permissions); when
    the block ends without an exception it replaces `out` (whatever was there), when the
    block raises it is removed and `out` keeps what it had."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        yield tmp
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`, replacing whatever is there."""
    if out.is_symlink() or out.is_file():
        out.unlink()
    elif out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old)  # onto the empty folder mkdtemp made
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    os.replace(tmp, out)


def named_paths(outputs: Mapping[str, object], names, rule: str) -> dict[str, Path]:
    """A rule's named outputs (name -> path) as paths, checked against the `names` the library
    writes: UnetcapError naming every name `outputs` lacks and every name it has that the
    library does not know (the rule and the library name the same outputs, or nothing is
    written)."""
    names = list(names)
    given = {str(name): Path(path) for name, path in dict(outputs).items()}
    missing, unknown = [n for n in names if n not in given], sorted(set(given) - set(names))
    if missing or unknown:
        problems = [f"no path for {', '.join(missing)}"] if missing else []
        problems += [f"unknown output(s) {', '.join(unknown)}"] if unknown else []
        raise UnetcapError(f"rule {rule}: " + "; ".join(problems) + f". Its outputs are named {', '.join(names)}.")
    return given


class Problems:
    """Collects every bad input of a pass, then raises them together: each problem once,
    under the file that holds it. A problem met in several sampled images of one file (the
    slices of a volume) is one line: where in the file (`where`: "slice 2, frame 1"), the
    bad pixels summed (`pixels`) and how many images it spoiled."""

    def __init__(self, what: str):
        self.what = what
        self.found: dict[str, list] = {}  # "path: message" -> [images, pixels, [where]]

    def add(self, path, message: str, where: str = "", pixels: int = 0) -> None:
        entry = self.found.setdefault(f"{path}: {message}", [0, 0, []])
        entry[0] += 1
        entry[1] += pixels
        if where and where not in entry[2]:
            entry[2].append(where)

    @property
    def items(self) -> list[str]:
        lines = []
        for line, (images, pixels, where) in self.found.items():
            line += f": {pixels} pixel(s)" if pixels else ""
            line += f" in {'; '.join(where[:4])}{' ...' if len(where) > 4 else ''}" if where else ""
            lines.append(line + (f" ({images} sampled images)" if images > 1 else ""))
        return lines

    def raise_if_any(self) -> None:
        if self.found:
            lines = "\n  ".join(self.items)
            raise UnetcapError(f"{self.what}: {len(self.found)} problem(s)\n  {lines}")


def parallel_map(fn, items, workers: int, chunksize: int = 1):
    """fn over items, in order, in `workers` processes (in this one when workers is 1)."""
    if workers <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(fn, items, chunksize=chunksize)


def write_table(table: pd.DataFrame, out_csv) -> None:
    """The cohort sample or the store's index as CSV, written atomically, with stable bytes."""
    write_text_atomic(out_csv, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def read_table(path) -> pd.DataFrame:
    """The cohort sample or the store's index (patient ids, groups and centres stay text)."""
    table = pd.read_csv(path, dtype={"patient": str, "group": str, "centre": str, "vendor": str})
    for column in ("group", "centre", "vendor"):
        if column in table:
            table[column] = table[column].fillna("")
    return table
