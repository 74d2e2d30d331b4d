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


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
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
    """"CPU", or the name of the first GPU that TensorFlow sees (when it is imported)."""
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
