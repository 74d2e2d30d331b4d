"""Small helpers shared by the test modules (one copy of each)."""

import hashlib
from pathlib import Path

import pytest

from unetcap import UnetcapError


def digests(folder: Path) -> dict[str, str]:
    """{path relative to `folder`: sha256} of every file under `folder`."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def raised_error(call) -> str:
    """The message of the UnetcapError that `call()` raises (the test fails if it raises none)."""
    with pytest.raises(UnetcapError) as err:
        call()
    return str(err.value)
