"""An ``--out`` that cannot be written, or a night another replay holds: one line, exit 2.

Each case runs the real command line in a fresh Python (what an operator sees on stderr),
never a traceback (issue 13, smaller ones).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mascara_actors.storage import NightLock

REPO = Path(__file__).resolve().parents[2]
NIGHT = REPO / "replay_data" / "night"
NIGHT_DIR = "20260320LPC"
"""The camera-night directory the committed night is reduced into."""
CODE = "import sys; from mascara_actors.cli import main; sys.exit(main(sys.argv[1:]))"


def _replay(out: Path, *, prefix: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """``mascara-actors --replay NIGHT --out OUT``: exit code and stderr lines."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [*prefix, sys.executable, "-c", CODE, "--replay", str(NIGHT), "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    return result.returncode, result.stderr.splitlines()


def test_a_read_only_out(tmp_path: Path) -> None:
    out = tmp_path / "readonly"
    out.mkdir()
    out.chmod(0o555)
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root writes anywhere: drop the capabilities that allow it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: a read-only directory is writable")
        prefix = (setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner")
    try:
        code, err = _replay(out, prefix=prefix)
    finally:
        out.chmod(0o755)
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"mascara-actors: {out / NIGHT_DIR}: permission denied; ")
    assert "choose a directory you may write to (--out)" in err[0]
    assert list(out.iterdir()) == []


def test_an_out_that_is_a_regular_file(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    out.write_text("not a directory\n")
    code, err = _replay(out)
    assert code == 2
    assert err == [
        f"mascara-actors: {out} is a file, not a directory: pass a directory (or a path that "
        "does not exist yet) as --out, or move the file away"
    ]
    assert out.read_text() == "not a directory\n"


def test_a_night_held_by_another_replay(tmp_path: Path) -> None:
    out = tmp_path / "out"
    table = out / "state" / "darktableLPC.dat"
    table.parent.mkdir(parents=True)
    table.write_text("/the/other/run/masterdark.fits\n")
    before = table.stat().st_mtime_ns
    with NightLock(out / NIGHT_DIR) as lock:
        code, err = _replay(out)
    # refused before it touched the night's masters or the camera's dark table
    assert table.read_text() == "/the/other/run/masterdark.fits\n"
    assert table.stat().st_mtime_ns == before
    assert not (out / NIGHT_DIR / "binned").exists()
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"mascara-actors: {out / NIGHT_DIR} is locked by another writer "
                             f"(process {os.getpid()}@")
    assert f"lock file {lock.path}" in err[0]
    assert err[0].endswith("stop that process or wait for it to finish")
