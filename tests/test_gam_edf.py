"""The GAM's edf per term (unetcap.analysis.gam.term_edf) as mgcv counts them, the constant
left to the intercept: a straight line in log(Dataset) has edf 1 (pygam's own count gives it
2), a factor of k levels at most k - 1, the intercept 1, and the terms' edf sum to the total.
tests/test_stats_r.py checks them against mgcv's own fit of the same terms."""

import numpy as np
import pandas as pd
import pytest
import synthetic

from unetcap.analysis.gam import fit_gam, term_table
from unetcap.analysis.table import model_frame


@pytest.fixture(scope="module")
def straight():
    """A GAM of runs whose mean DICE per dataset size lies on a straight line in
    log(Dataset), with a family effect and noise (its mean 0 at every size, so that no bend
    fits better than the line), on the full generated grid (balanced)."""
    data = model_frame(synthetic.metrics_table(seed=0)).data
    noise = pd.Series(np.random.default_rng(0).normal(0, 0.03, len(data)), index=data.index)
    noise -= noise.groupby(data["Dataset"]).transform("mean")
    family = data["Family"].map({"EfficientNet": 0.0, "ResNet": 0.05, "VGG": -0.05})
    fit = fit_gam(data.assign(DICE=0.2 + 0.06 * np.log(data["Dataset"]) + family + noise))
    return fit, term_table(fit).set_index("term")


def test_a_straight_line_has_edf_1(straight):
    fit, terms = straight
    assert terms.at["s(log(Dataset))", "edf"] == pytest.approx(1, abs=0.02)
    # pygam's own count gives the spline the constant it shares with the intercept
    assert fit.gam.statistics_["edof_per_coef"][fit.gam.terms.get_coef_indices(0)].sum() > 1.9


def test_edf_leave_the_constant_to_the_intercept_and_sum_to_the_total(straight):
    fit, terms = straight
    assert terms.at["intercept", "edf"] == 1
    assert 1.9 < terms.at["f(Family)", "edf"] <= 2  # three families, little shrinkage
    assert (terms["edf"] >= 0).all()
    assert terms["edf"].sum() == pytest.approx(fit.gam.statistics_["edof"], rel=1e-7)


def test_a_line_on_two_sizes_has_edf_at_most_1():
    """Two dataset sizes: log(Dataset) enters as pygam's linear term, one coefficient."""
    metrics = synthetic.metrics_table(seed=7, sizes=(160, 640), backbones=("resnet18", "vgg16"), folds=3)
    terms = term_table(fit_gam(model_frame(metrics).data)).set_index("term")
    assert 0.9 < terms.at["l(log(Dataset))", "edf"] <= 1
