"""Split invariants for the paper's six sizes on a 100-patient cohort index (no pixels)."""

import itertools

import pandas as pd
import pytest

from unetcap import UnetcapError
from unetcap.splits import check_sizes, fold_indices, make_manifest, write_manifest

PAPER_SIZES = [200, 500, 1000, 2500, 5000, 10000]
M = 100
# docs/design.md §5: dev and test (patients x images) for the paper's sizes
PAPER_TABLE = {
    200: ((5, 32), (2, 20)),
    500: ((5, 80), (2, 50)),
    1000: ((10, 80), (2, 100)),
    2500: ((20, 100), (5, 100)),
    5000: ((40, 100), (10, 100)),
    10000: ((80, 100), (20, 100)),
}
PARAMS = dict(folds=5, seed=123, images_per_patient=M, holdout_fraction=0.2)


@pytest.fixture(scope="module")
def index():
    patients = [f"DET{p:05d}01" for p in range(1, 101)]
    return pd.DataFrame({"patient": [p for p in patients for _ in range(M)]})


@pytest.fixture(scope="module")
def manifests(index):
    return {s: make_manifest(index, size=s, **PARAMS) for s in PAPER_SIZES}


def patients(manifest, part):
    return [e["patient"] for e in manifest[part]]


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_patients_and_images_match_the_paper(manifests, size):
    m = manifests[size]
    (dev_p, dev_i), (test_p, test_i) = PAPER_TABLE[size]
    assert [len(e["indices"]) for e in m["dev"]] == [dev_i] * dev_p
    assert [len(e["indices"]) for e in m["test"]] == [test_i] * test_p
    assert m["n_images"] == {"dev": 0.8 * size, "test": 0.2 * size}
    assert sum(len(e["indices"]) for e in m["dev"] + m["test"]) == size


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_patient_disjoint_and_indices_belong_to_their_patient(manifests, index, size):
    m = manifests[size]
    dev, test = patients(m, "dev"), patients(m, "test")
    assert len(set(dev)) == len(dev) and len(set(test)) == len(test) and not set(dev) & set(test)
    for entry in m["dev"] + m["test"]:
        assert len(set(entry["indices"])) == len(entry["indices"])
        assert set(index.patient.iloc[entry["indices"]]) == {entry["patient"]}


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_folds_are_equal_and_patient_disjoint(manifests, size):
    m = manifests[size]
    folds = [fold_indices(m, f) for f in range(5)]
    assert len({len(f["val"]) for f in folds}) == 1
    assert len({len(f["train"]) for f in folds}) == 1
    for f in folds:
        assert not set(f["train"]) & set(f["val"]) and not set(f["test"]) & set(f["train"] + f["val"])
        assert len(f["train"]) + len(f["val"]) == m["n_images"]["dev"]
    for a, b in itertools.combinations(range(5), 2):
        assert not set(folds[a]["val"]) & set(folds[b]["val"])


def test_subsets_are_nested_by_patient(manifests):
    for small, large in itertools.pairwise(PAPER_SIZES):
        assert patients(manifests[large], "dev")[: len(manifests[small]["dev"])] == patients(manifests[small], "dev")
        assert patients(manifests[large], "test")[: len(manifests[small]["test"])] == patients(manifests[small], "test")
    # the holdout pool (20 patients) never feeds development
    all_test = set(patients(manifests[10000], "test"))
    assert len(all_test) == 20
    assert not all_test & set(patients(manifests[10000], "dev"))


def test_manifests_are_byte_identical_and_depend_on_the_seed(index, tmp_path):
    index.to_csv(tmp_path / "sample.csv", index=False)
    a = write_manifest(tmp_path / "sample.csv", tmp_path / "a.json", size=1000, **PARAMS)
    write_manifest(tmp_path / "sample.csv", tmp_path / "b.json", size=1000, **PARAMS)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    c = make_manifest(index, size=1000, **{**PARAMS, "seed": 124})
    assert patients(a, "dev") != patients(c, "dev")


def test_sizes_the_cohort_cannot_give_are_refused_by_name():
    check_sizes(PAPER_SIZES, 100, 5, M, 0.2)
    with pytest.raises(UnetcapError, match=r"config key sizes: .*20000 \(needs 160 development"):
        check_sizes([200, 20000], 100, 5, M, 0.2)
    with pytest.raises(UnetcapError, match=r"sizes: .*\b5 \(too small"):
        check_sizes([5], 100, 5, M, 0.2)
