"""Every generated file under docs/ is what its committed inputs rebuild (docs/rebuild.py):
a change to the analysis, the figures or the bad-input checks that changes a committed
table or figure fails here until `python docs/rebuild.py` rewrites it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_generated_doc_is_stale():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "rebuild.py"), "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr[-3000:]}\nrewrite them: .venv/bin/python docs/rebuild.py"
    assert "14 generated files under docs/, 0 stale" in proc.stdout, proc.stdout


def test_the_check_finds_a_stale_file(tmp_path):
    """The comparison can fail: a changed table is stale; damage's timings are not."""
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import rebuild
    finally:
        sys.path.pop(0)
    committed = ROOT / "docs" / "bad_input" / "damage.md"
    retimed = tmp_path / "damage.md"
    text = committed.read_text()
    retimed.write_text(text.replace(" s.\n", "1 s.\n", 1).replace("- run time: ", "- run time: 9"))
    assert retimed.read_text() != text
    assert rebuild.comparable(retimed) == rebuild.comparable(committed)
    changed = tmp_path / "damage.md"
    changed.write_text(text.replace("| none |", "| prepare |", 1))
    assert rebuild.comparable(changed) != rebuild.comparable(committed)
