"""The README's Python API example runs as written against a fresh store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def python_example() -> str:
    section = README.read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    return code


def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    code = python_example()
    assert "from lancemem import Memory" in code and len(code.splitlines()) <= 12
    env = {**os.environ, "LANCEMEM_DB": str(tmp_path / "db")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    score, text = result.stdout.splitlines()[0].split(" ", 1)
    assert -1 <= float(score) <= 1 and text == "I love pizza with olives"
    assert result.stdout.splitlines()[-1] == "UPDATE"
    assert (tmp_path / "db").is_dir()  # LANCEMEM_DB was honoured, not the default store


def test_import_lancemem_stays_cheap() -> None:
    """``Memory`` is loaded on first use: importing the package loads no LanceDB."""
    probe = ("import sys, lancemem; "
             "print('lancedb' in sys.modules, 'lancemem.memory.facade' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["False", "False"]
    loaded = subprocess.run([sys.executable, "-c", "from lancemem import Memory; print(Memory)"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert "lancemem.memory.facade.Memory" in loaded.stdout


def test_the_api_names_come_from_the_package_itself() -> None:
    import lancemem
    from lancemem.core import errors

    assert set(lancemem.__all__) >= {"Memory", "Store", "FastEmbedder", "LanceMemError"}
    for name in lancemem.__all__:
        assert getattr(lancemem, name) is not None
    assert lancemem.NotFoundError is errors.NotFoundError
