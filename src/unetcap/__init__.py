"""Library of the U-Net capacity study: one module per stage of the study.

Stages, in the order the data flows: cohort (read LVSC-layout folders), phantom
(write a synthetic cohort in that layout), prepare (the prepared image store),
splits (holdout, subsets, folds), train (one training run), metrics (DICE, BCE,
metrics.json, the merged table), stats and figures (the analysis).
"""

import os

# segmentation-models must use tf.keras (legacy Keras 2 through tf-keras); these have to be
# set before anything imports TensorFlow. Users may override them from the environment.
os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class UnetcapError(Exception):
    """A problem the user can fix: bad input data, a bad config value, a bad results file.

    The message says what is wrong, where (file, key) and what would fix it.
    """


def write_bytes_atomic(path, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, then rename it onto `path`: a reader
    (or a job killed midway) never sees half a file."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path, text: str) -> None:
    """`write_bytes_atomic` of `text` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))


def log_to(path) -> None:
    """Send this process's stderr and the library's log lines (INFO and up, timestamped)
    to the rule's log file, line by line so a user can follow a running job."""
    import logging
    import sys

    sys.stderr = open(path, "a", buffering=1)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
