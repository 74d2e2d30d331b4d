"""Library of the U-Net capacity study: one module per stage of the study.

Stages, in the order the data flows (docs/design.md): cohort (read a cohort, whatever its
format, into the sample table), phantom (a synthetic cohort in each format), prepare (the
prepared image store), splits (holdout, subsets, folds), train (one
training run) with scoring (DICE, BCE), metrics (metrics.json and history.csv), merge
and segmentations (the merged tables), analysis (the statistics and the sample-size curves)
and figures.
What every stage shares (atomic writing, collected problems, worker processes, the sample
and index tables) is in `unetcap.common`.
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


def log_to(path) -> None:
    """Send this process's stderr and the library's log lines (INFO and up, timestamped)
    to the rule's log file, line by line so a user can follow a running job."""
    import logging
    import sys

    sys.stderr = open(path, "a", buffering=1)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
