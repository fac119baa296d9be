"""Issue 13: the summary lists every set without a binned image, with the reason, and every
product the night could not make (from the event log, as a real night writes it)."""

from __future__ import annotations

from pathlib import Path

from mascara_actors import messages as ev
from mascara_actors.summary import collect_summary, render_html, render_text


def _night(tmp_path: Path, events: list[ev.Event]) -> Path:
    night = tmp_path / "20260320LPC"
    (night / "logs").mkdir(parents=True)
    (night / "logs" / "events.jsonl").write_text(
        "".join(ev.to_json(e) + "\n" for e in events)
    )
    return night


def _started(t: float) -> ev.NightStarted:
    return ev.NightStarted(time=t, night="20260320", camera="LPC", out_dir="x",
                           frames_expected=120)


def test_sets_without_images_and_missing_products_are_listed(tmp_path) -> None:
    night = _night(tmp_path, [
        _started(1.0),
        ev.SetBinned(time=2.0, setidx=1306884, nimages=50, nrefused=0, flag=0,
                     path="bin_65344225C.fits", nstars=900),
        ev.SetBinned(time=3.0, setidx=1306885, nimages=3, nrefused=1, flag=3, path="",
                     nstars=0, reason="3 usable frames, too few to bin (1 refused)"),
        ev.ProductFailed(time=4.0, setidx=1306886, product="binned",
                         reason="could not write bin_65344325C.fits: No space left on device"),
        ev.ProductFailed(time=5.0, setidx=None, product="slow",
                         reason="No space left on device"),
        ev.NightFinished(time=6.0, frames_reduced=120, frames_failed=0, nightly_files=[],
                         wall_s=5.0, missing=["set 1306886: binned image and slow photometry",
                                              "the nightly slow file slow_20260320LPC.hdf5"]),
    ])
    s = collect_summary(night, weather=False)
    assert s.sets_without_image == (
        (1306885, "3 usable frames, too few to bin (1 refused)"),
        (1306886, "binned not written: could not write bin_65344325C.fits: No space left on "
                  "device"),
    )
    assert s.missing == ("set 1306886: binned image and slow photometry",
                         "the nightly slow file slow_20260320LPC.hdf5")
    text = render_text(s)
    assert "set 1306885: 3 usable frames, too few to bin (1 refused)" in text
    assert "NOTE: The night is NOT complete: 2 product(s) missing" in text
    html = render_html(s)
    assert '<table id="unbinned">' in html
    assert "<td>1306886</td>" in html


def test_a_set_binned_by_a_later_run_is_not_listed(tmp_path) -> None:
    """A resumed night made what the first run could not: nothing is listed any more."""
    night = _night(tmp_path, [
        _started(1.0),
        ev.ProductFailed(time=2.0, setidx=1306884, product="binned", reason="disk full"),
        ev.NightFinished(time=3.0, frames_reduced=50, frames_failed=0, nightly_files=[],
                         wall_s=2.0, missing=["set 1306884: binned image and slow photometry"]),
        _started(4.0),
        ev.SetBinned(time=5.0, setidx=1306884, nimages=50, nrefused=0, flag=0,
                     path="bin_65344225C.fits", nstars=900),
        ev.NightFinished(time=6.0, frames_reduced=0, frames_failed=0, nightly_files=[],
                         wall_s=2.0),
    ])
    s = collect_summary(night, weather=False)
    assert s.sets_without_image == ()
    assert s.missing == ()
    assert "none: every set was binned" in render_text(s)
    assert "NOT complete" not in render_text(s)
