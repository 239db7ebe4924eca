"""docs/writing-a-store.md runs as printed: its contract-suite example passes on SQLite."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cloudsessions.testing import StoreContract

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "writing-a-store.md"


def test_the_guides_contract_suite_example_passes(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
    example = next(b for b in blocks if "(StoreContract)" in b)
    (tmp_path / "test_my_store.py").write_text(example)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_store.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = [name for name in dir(StoreContract) if name.startswith("test_")]
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= len(tests) and "failed" not in done.stdout
