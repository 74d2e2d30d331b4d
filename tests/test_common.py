"""The helpers every stage shares (unetcap.common): atomic files and folders."""

import pytest

from unetcap.common import atomic_dir, atomic_path, tmp_path, write_text_atomic


def test_atomic_path_replaces_the_file_only_when_the_block_ends(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    path = folder / "sub" / "metrics.json"
    write_text_atomic(path, "old")
    with atomic_path(path) as tmp:
        assert tmp == tmp_path(path) and tmp.name == ".metrics.tmp.json" and tmp.parent == path.parent
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing visible before the block ends
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json"]


def test_atomic_path_keeps_the_old_file_and_removes_the_temporary_when_the_block_raises(tmp_path):
    path = tmp_path / "history.csv"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_atomic_dir_replaces_a_whole_folder_or_leaves_it_as_it_was(tmp_path):
    out = tmp_path / "cohort"
    with atomic_dir(out) as tmp:
        (tmp / "P00").mkdir()
        assert not out.exists()
    assert sorted(p.name for p in out.iterdir()) == ["P00"]
    with pytest.raises(ValueError), atomic_dir(out) as tmp:
        (tmp / "P01").mkdir()
        raise ValueError("bad patient")
    assert sorted(p.name for p in out.iterdir()) == ["P00"]
    with atomic_dir(out) as tmp:
        (tmp / "P02").mkdir()
    assert sorted(p.name for p in out.iterdir()) == ["P02"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cohort"]  # no temporaries left
