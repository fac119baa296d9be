"""The pflag / aflag table and its decoder."""

from __future__ import annotations

import numpy as np
import pytest

from mascara_actors.photometry.flags import (
    AFLAG_DEFINITIONS,
    PFLAG_DEFINITIONS,
    AFlag,
    PFlag,
    decode_flags,
    flag_table,
)


@pytest.mark.parametrize(("table", "enum"), [(PFLAG_DEFINITIONS, PFlag),
                                              (AFLAG_DEFINITIONS, AFlag)])
def test_table_is_the_enum_in_bit_order(table, enum) -> None:
    bits = [int(d.bit) for d in table]
    assert bits == [1 << i for i in range(len(bits))]
    assert bits == [int(member) for member in enum]
    assert [d.name for d in table] == [member.name.lower() for member in enum]
    assert all(d.description for d in table)
    assert max(bits) < 256  # stored as uint8


def test_legacy_bit_values() -> None:
    """legacy-pipeline.md section 5 (pflag) and 4.2 (aflag)."""
    assert (PFlag.EDGE, PFlag.BAD_SKY_PIXEL, PFlag.NEGATIVE_SKY, PFlag.SATURATED,
            PFlag.NEGATIVE_FLUX, PFlag.NEAR_MOON) == (1, 2, 4, 8, 16, 32)
    assert (AFlag.BRIGHT_SKY, AFlag.VERY_BRIGHT_SKY, AFlag.SOLVE_FAILED) == (1, 2, 4)


def test_decode_scalar_and_array() -> None:
    assert decode_flags(0) == []
    assert decode_flags(np.uint8(40)) == ["saturated", "near_moon"]
    assert decode_flags(np.array([1, 0, 80], dtype=np.uint8)) == [
        ["edge"], [], ["negative_flux", "nan_in_aperture"]]
    assert decode_flags(5, AFLAG_DEFINITIONS) == ["bright_sky", "solve_failed"]


def test_decode_rejects_unknown_bits() -> None:
    with pytest.raises(ValueError, match=r"flag value 128 has bits outside the table"):
        decode_flags(np.array([1, 128]))
    with pytest.raises(ValueError, match=r"flag value 16 has bits outside"):
        decode_flags(16, AFLAG_DEFINITIONS)
    with pytest.raises(ValueError, match=r"must be integers"):
        decode_flags(1.0)


def test_flag_table_markdown() -> None:
    text = flag_table()
    lines = text.strip().splitlines()
    assert lines[0] == "| bit | name | meaning |"
    assert len(lines) == 2 + len(PFLAG_DEFINITIONS)
    assert lines[2].startswith("| 1 | `edge` | ")
    assert "| 8 | `large_residual` |" in flag_table(AFLAG_DEFINITIONS)
