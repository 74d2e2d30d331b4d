"""Provenance: hashes of data and config, versions of the software, the device and host.

Plain functions without TensorFlow: `device()` asks TensorFlow only when the caller has
already imported it.
"""

import hashlib
import importlib.metadata
import json
import platform
import socket
import sys


class FileHash:
    """sha256 of a file, read front to back; it may still be being written behind the read
    position: `advance(end)` hashes up to byte `end` (bytes that are final by then),
    `hexdigest()` the rest. A context manager (closes the file)."""

    def __init__(self, path, chunk: int = 1 << 20):
        self._file = open(path, "rb", buffering=0)  # no read-ahead past `end`
        self._hash = hashlib.sha256()
        self._done, self._chunk = 0, chunk

    def advance(self, end: int | None = None) -> None:
        while end is None or self._done < end:
            block = self._file.read(self._chunk if end is None else min(self._chunk, end - self._done))
            if not block:
                return
            self._hash.update(block)
            self._done += len(block)

    def hexdigest(self) -> str:
        self.advance()
        return self._hash.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def sha256_file(path) -> str:
    with FileHash(path) as h:
        return h.hexdigest()


def sha256_json(obj) -> str:
    """sha256 of `obj` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def versions(*dists: str) -> dict[str, str | None]:
    """{name: installed version} for distributions or import names (None if not installed).

    A name that is no distribution is looked up as an import name, so "tensorflow" finds
    tensorflow-cpu. "python" gives the interpreter's version.
    """
    found: dict[str, str | None] = {}
    providers = None
    for name in dists:
        if name == "python":
            found[name] = platform.python_version()
            continue
        try:
            found[name] = importlib.metadata.version(name)
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        if providers is None:
            providers = importlib.metadata.packages_distributions()
        dist = (providers.get(name) or providers.get(name.replace("-", "_")) or [None])[0]
        found[name] = importlib.metadata.version(dist) if dist else None
    return found


def device() -> str:
    """The string "CPU", or the name of the first GPU that TensorFlow sees (when it is imported)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return "CPU"
    try:
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return str(details.get("device_name") or gpus[0].name)
    except Exception:  # device details are best effort; the run does not depend on them
        pass
    return "CPU"


def host() -> str:
    """The machine's host name."""
    return socket.gethostname()
