"""The README stays true: its flag table is the code's, its commands have --help."""

from __future__ import annotations

from pathlib import Path

import pytest

from mascara_actors.cli import build_parser, main
from mascara_actors.photometry import AFLAG_DEFINITIONS, PFLAG_DEFINITIONS, flag_table
from mascara_actors.records import describe_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_flag_tables_match_the_code() -> None:
    text = README.read_text()
    section = text.split("<!-- flags:start -->")[1].split("<!-- flags:end -->")[0].strip()
    expected = (
        flag_table(PFLAG_DEFINITIONS).strip() + "\n\n" + flag_table(AFLAG_DEFINITIONS).strip()
    )
    assert section == expected.strip()


def test_readme_quick_start_has_exactly_the_two_make_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start")[1].split("```bash")[1].split("```")[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_records_doc_matches_the_dtypes() -> None:
    doc = (README.parent / "docs" / "records.md").read_text()
    assert doc.split("\n\n", 2)[2].strip() == describe_markdown().strip()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["simulate", "--help"],
        ["demo", "--help"],
        ["station", "--help"],
        ["export", "--help"],
        ["summary", "--help"],
        ["archive", "--help"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: mascara-actors" in out
    assert len(out.splitlines()) > 5


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "--replay" in capsys.readouterr().out
    assert build_parser().prog == "mascara-actors"


HEAVY = ("distributed", "textual", "matplotlib", "h5py", "astropy.coordinates",
         "mascara_actors.actors.pipeline", "hw.sim.sky")
"""What no command's --help may load: Dask, the console, the plots, the pipeline, the
renderer (each seconds on a station computer)."""


def test_help_loads_no_heavy_module() -> None:
    """`mascara-actors --help` defines every command: none of their modules may import the
    pipeline, Dask or the console at import time (they do it in ``run``), so that help is
    there in a fraction of a second."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mascara_actors.cli import build_parser\n"
        "build_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == ""
