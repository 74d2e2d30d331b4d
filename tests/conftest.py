import os

# One BLAS thread: the GAM and OLS fits are small, and OpenBLAS's threads only fight
# over the two cores here (the analysis tests ran about 5x slower with them). Must be set
# before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
