"""Split invariants for the paper's six sizes on a 100-patient cohort index (no pixels)."""

import itertools

import numpy as np
import pandas as pd
import pytest
import yaml

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


# ---------------------------------------------------------------- the holdout pool and repeats
def test_every_manifest_lists_the_whole_holdout_pool_and_no_development_patient(manifests, index):
    pools = {tuple(e["patient"] for e in m["holdout"]) for m in manifests.values()}
    assert len(pools) == 1 and len(next(iter(pools))) == 20  # the same 20 patients for every size
    m = manifests[1000]
    assert all(len(e["indices"]) == M for e in m["holdout"])  # every sampled image
    assert set(patients(m, "test")) <= set(patients(m, "holdout"))
    assert not set(patients(manifests[10000], "dev")) & set(patients(m, "holdout"))
    rows = fold_indices(m, 0)["holdout"]
    assert len(rows) == 20 * M and set(index.patient.iloc[rows]) == set(patients(m, "holdout"))


def test_repeats_draw_other_patients_with_their_own_folds(index):
    one = make_manifest(index, size=500, **PARAMS)
    three = make_manifest(index, size=500, **PARAMS, repeats=3)
    draw = lambda m, r: [e for e in m["dev"] if e["repeat"] == r]  # noqa: E731
    assert draw(three, 0) == draw(one, 0) == [{**e, "repeat": 0} for e in one["dev"]]
    for r in (1, 2):
        assert [e["fold"] for e in draw(three, r)] == [r * 5 + f for f in range(5)]
    patients_of = [set(e["patient"] for e in draw(three, r)) for r in range(3)]
    assert all(len(p) == 5 for p in patients_of) and not set.intersection(*patients_of)
    assert not set().union(*patients_of) & set(patients(three, "holdout"))
    for fold in range(15):
        f = fold_indices(three, fold)
        assert len(f["train"]) == 400 - 80 and len(f["val"]) == 80
        assert set(index.patient.iloc[f["train"] + f["val"]]) == patients_of[fold // 5]
    with pytest.raises(UnetcapError, match="fold 15 out of range 0..14"):
        fold_indices(three, 15)


def test_repeats_wrap_round_a_short_pool():
    """10 development patients, 4 per draw: the third draw wraps round to the pool's start."""
    index = pd.DataFrame({"patient": [f"P{p:02d}" for p in range(13) for _ in range(10)]})
    m = make_manifest(index, size=50, folds=2, seed=1, images_per_patient=10, holdout_fraction=0.2, repeats=3)
    draws = [[e["patient"] for e in m["dev"] if e["repeat"] == r] for r in range(3)]
    assert [len(d) for d in draws] == [4, 4, 4]
    assert draws[2][2:] == draws[0][:2]


def test_repeats_per_size_and_their_errors():
    from unetcap.splits import repeats_per_size

    assert repeats_per_size([100, 200], 2) == {100: 2, 200: 2}
    assert repeats_per_size([100, 200], [3, 1]) == {100: 3, 200: 1}
    with pytest.raises(UnetcapError, match="config key repeats: 1 values for 2 sizes"):
        repeats_per_size([100, 200], [3])
    with pytest.raises(UnetcapError, match="config key repeats"):
        make_manifest(pd.DataFrame({"patient": ["a"] * 4}), size=4, **{**PARAMS, "images_per_patient": 4}, repeats=0)


def test_design_spaces_sizes_geometrically_up_to_what_the_cohort_gives_with_more_repeats_when_small():
    from unetcap.splits import design

    plan = design(60, 20, folds=3, holdout_fraction=0.2, n_sizes=5)
    sizes = plan["sizes"]
    assert len(sizes) == 5 and sizes[-1] == 1200  # 48 development patients x 20 images / 0.8
    ratios = np.diff(np.log(sizes))
    assert np.ptp(ratios) < 0.05  # geometric
    check_sizes(sizes, 60, 3, 20, 0.2)
    with pytest.raises(UnetcapError):
        check_sizes([sizes[-1] + 1], 60, 3, 20, 0.2)
    assert plan["repeats"] == sorted(plan["repeats"], reverse=True) and plan["repeats"][0] > plan["repeats"][-1] == 1
    with pytest.raises(UnetcapError, match="smallest size"):
        design(60, 20, smallest=5000)
    pilot = design(60, 20, smallest=30, largest=480)  # labels not all made yet: a pilot
    assert pilot["sizes"] == [30, 60, 120, 240, 480] and pilot["repeats"] == [3, 3, 2, 1, 1]
    with pytest.raises(UnetcapError, match="more than the cohort gives"):
        design(60, 20, largest=5000)


def test_design_from_the_command_line(capsys):
    from unetcap.splits import main

    main(["--patients", "60", "--images-per-patient", "20"])
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["sizes"][-1] == 1200 and len(out["repeats"]) == 5 and out["folds"] == 3
