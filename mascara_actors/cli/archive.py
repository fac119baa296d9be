"""``mascara-actors archive ROOT --out DIR``: re-reduce an archive of raw frames on Dask.

Every camera-night under ROOT (:mod:`mascara_actors.app.archive.scan`) is one task on a
``LocalCluster`` of this machine or on the scheduler at ``--scheduler``; each gives the
bytes a ``--replay`` of the night gives. Nights already complete are verified, not reduced
again; interrupted ones resume. The manifest of the run is ``DIR/manifests/archive-*.csv``.

Exit codes: 0 every chosen night is reduced (now or before, verified); 1 some night failed,
stopped or is incomplete (the table and the manifest say which and why; run the same
command again); 2 bad input (no such ROOT, no scheduler at the address, nothing to reduce)
or a full output disk (the manifest could not be written: the run stopped as at Ctrl-C);
130/143 when a signal stopped the run (its running nights finished their current set).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table

from mascara_actors.app.archive.words import counted
from mascara_actors.cli import file_in_the_way
from mascara_actors.cli.interrupts import imports_uninterrupted
from mascara_actors.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from mascara_actors.app.archive.run import ArchiveRun, Progress
    from mascara_actors.app.archive.scan import ArchiveScan, CameraNight
    from mascara_actors.app.archive.scan_memory import ScanMemory
    from mascara_actors.app.archive.task import NightOutcome

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "archive",
        help="re-reduce an archive of raw frames, every camera-night a task on Dask",
        description=(
            "Find every camera-night under ROOT (any depth; raw frames named "
            "{lstseq:08d}{CAM}[dark|bias|flat].fits[.gz|.fz], grouped by camera and night from "
            "their names and headers) and reduce each as one task on Dask distributed: a "
            "LocalCluster of this machine (one worker process per core) or the scheduler at "
            "--scheduler. Each night's products are those of `mascara-actors --replay` of "
            "that night, in DIR/{night}{SITE}{CAM}/ with a provenance.json. Nights already "
            "complete are verified and skipped; interrupted ones resume. Ctrl-C: the running "
            "nights finish their current set; a second Ctrl-C abandons them."
        ),
        epilog=(
            "Examples: `mascara-actors archive /data/raw --out /data/reduced --dry-run`; "
            "`mascara-actors archive /data/raw --out /data/reduced --nights '2026*' "
            "--cameras LPC,LPN`; on a cluster: `dask scheduler` on one machine, `dask worker "
            "tcp://HOST:8786` on each, then `mascara-actors archive ROOT --out DIR "
            "--scheduler tcp://HOST:8786` (ROOT and DIR on a disk every worker sees). "
            "What the workers log is printed here (`mascara-actors -v archive ...` for "
            "more); the report of each night reduced, DIR/NIGHT/summary/, names its failed "
            "frames, its masters and its warnings. Exit status: 0 all reduced, 1 some "
            "night not, 2 bad input or a full output disk (the manifest could not be "
            "written; the run stopped), 130 interrupted."
        ),
    )
    p.add_argument("root", type=Path, metavar="ROOT", help="the archive of raw frames")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="where the reduced nights go (one directory per camera-night)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster "
                   "on this machine)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes of the LocalCluster (default: one per core)")
    p.add_argument("--nights", default=None, metavar="PATTERN",
                   help="only nights whose YYYYMMDD matches, e.g. '202603*'")
    p.add_argument("--cameras", default=None, metavar="IDS",
                   help="only these cameras, e.g. LPC,LPN")
    p.add_argument("--retries", type=int, default=2, metavar="K",
                   help="times a night is tried again after its task failed or its worker "
                   "died (default 2)")
    p.add_argument("--dry-run", action="store_true",
                   help="list the camera-nights and what would be done with each, reduce none")
    p.add_argument("--verify", action="store_true",
                   help="hash every product of the nights already complete to verify them "
                   "(by default a product whose size and modification time are those "
                   "recorded is not read: a full night is 3 GB)")
    p.add_argument("--rescan", action="store_true",
                   help="read every directory of ROOT again (by default the directories "
                   "unchanged since the last run into DIR are not: see DIR/state/archive/"
                   "scan.json); for frames overwritten in place since")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the Dask dashboard of the LocalCluster on 127.0.0.1 (any user "
                   "of this machine can read it, so it is off by default)")


def run(args: argparse.Namespace) -> int:
    """Run the command; the exit code is in the module docstring."""
    # Dask and the archive are imported here, not with the module: `--help` stays instant
    # and `--dry-run` does without Dask
    with imports_uninterrupted():
        from mascara_actors.app.archive.scan import scan_archive
        from mascara_actors.cli.progress import progress_bar
        from mascara_actors.config import load_config

    if args.retries < 0:
        raise ConfigError(f"--retries {args.retries}: give 0 or more")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more")
    if args.workers is not None and args.scheduler is not None:
        raise ConfigError("--workers is for the LocalCluster: with --scheduler, start the "
                          "workers with `dask worker ADDRESS`")
    _check_out(args.out)
    config = load_config(args.config)
    cameras = args.cameras.split(",") if args.cameras else None
    if args.scheduler is not None and not args.dry_run:
        # before the scan (minutes on an archive of years): a wrong address is said at once
        with imports_uninterrupted():
            from mascara_actors.app.archive.run import check_scheduler
        check_scheduler(args.scheduler)
    console = Console(stderr=True, soft_wrap=True)
    memory = _memory(args, config.directory)
    with console.status(f"scanning {args.root}") as status:
        scan = scan_archive(args.root, config, nights=args.nights, cameras=cameras,
                            exclude=args.out, memory=memory,
                            progress=lambda text: status.update(f"scanning {args.root}: {text}"))
    if memory.note:
        console.print(f"note: {memory.note}")
    _print_scan(console, scan, args, config.reduction.calibration.min_dark)
    if not scan.nights:
        raise ConfigError(_nothing_chosen(scan, args.root))
    if args.dry_run:
        _print_table(console, *_plan_table(scan.nights, args.out, config.directory))
        return 0
    with imports_uninterrupted():
        from mascara_actors.app.archive.run import ArchiveRun, archive_client

    archive = ArchiveRun(
        scan.nights,
        root=args.root,
        out=args.out,
        config_dir=config.directory,
        command=sys.argv,
        retries=args.retries,
        thorough=args.verify,
    )
    with archive_client(args.scheduler, workers=args.workers, retries=args.retries,
                        dashboard=args.dashboard) as client:
        # once the workers are up and of this version, before the first night: a run
        # stopped early leaves the next one the scan
        memory.save()
        info = client.scheduler_info()
        workers = len(info["workers"])
        console.print(f"Dask: scheduler {info['address']}, {counted(workers, 'worker')}")
        console.print("dashboard: " + (client.dashboard_link if args.dashboard or args.scheduler
                                       else "off (--dashboard to serve it on 127.0.0.1)"))
        console.print(f"manifest: {archive.manifest}")
        with progress_bar(console=console) as bar:
            nights = bar.add_task("camera-nights", total=len(scan.nights), unit="nights",
                                  note="")
            frames = bar.add_task("frames", total=archive.progress.frames, unit="frames", note="")

            def show(p: Progress) -> None:
                note = "stopping: running nights finish their set" if p.stopping else ""
                bar.update(nights, completed=p.nights_done, note=note)
                bar.update(frames, completed=p.frames_done)

            outcomes = archive.run(client, show)
    _print_table(console, *_outcome_table(outcomes, args.out))
    _print_totals(console, outcomes, workers)
    if archive.manifest_failure is not None:
        _print_manifest_failure(console, archive, outcomes)
        return 2
    console.print(f"manifest: {archive.manifest}")
    if archive.stopped_by is not None:
        console.print("stopped: run the same command again to finish the nights")
        return 128 + archive.stopped_by
    return 0 if all(o.status in ("reduced", "verified") for o in outcomes) else 1


def _print_manifest_failure(console: Console, archive: ArchiveRun,
                            outcomes: list[NightOutcome]) -> None:
    """The manifest's fate, and whether its failure cut the run short."""
    if archive.manifest_error is not None:
        console.print(f"manifest NOT written: {archive.manifest_error}")
    else:
        console.print(f"manifest: {archive.manifest} (written once there was room again)")
    if archive.abandoned or any(o.status in ("stopped", "not started") for o in outcomes):
        console.print(f"the run stopped early, as the manifest could not be written "
                      f"({archive.manifest_failure}); run the same command again once there "
                      "is room: it finishes the nights")


def _check_out(out: Path) -> None:
    """NotADirectoryError (said as what to do) when ``out``, or a directory it would be made
    in, is a file: before the scan, which takes minutes on an archive of years."""
    if file_in_the_way(out) is not None:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))


def _memory(args: argparse.Namespace, config_dir: Path) -> ScanMemory:
    """The last scan's memory in --out (none with --rescan; a dry run writes none)."""
    from mascara_actors.app.archive.scan_memory import ScanMemory

    return ScanMemory.load(args.out, config_dir, args.root, trust=not args.rescan,
                           keep=not args.dry_run)


def _print_scan(
    console: Console, scan: ArchiveScan, args: argparse.Namespace, min_dark: int
) -> None:
    cams = sorted({n.camera_id for n in scan.nights})
    nights = sorted({n.night for n in scan.nights})
    console.print(
        f"{args.root}: {counted(scan.files, 'raw frame')}; "
        f"{counted(len(scan.nights), 'camera-night')} chosen"
        + (f" ({', '.join(cams)}; {_span(nights)})" if nights else "")
    )
    if scan.unchanged:
        console.print(f"note: {scan.unchanged:,} of the "
                      f"{counted(scan.directories, 'directory', 'directories')} unchanged "
                      "since the last scan, not read again (--rescan reads them)")
    borrowing = [(n, n.borrowed) for n in scan.nights if n.borrowed is not None]
    for n, borrowed in borrowing[:_NOTES_EACH]:
        console.print(f"note: {n.key} has {len(n.darks)} darks: it borrows the "
                      f"{len(borrowed.paths)} of night {borrowed.night}")
    if len(borrowing) > _NOTES_EACH:
        console.print(f"note: and {len(borrowing) - _NOTES_EACH} more nights borrow the darks "
                      "of another (the --dry-run table's darks column says whose)")
    without = [n.key for n in scan.nights if n.borrowed is None and len(n.darks) < min_dark]
    if without:
        console.print(
            f"note: {counted(len(without), 'night')} with fewer than {min_dark} darks and no "
            f"night of its camera in the archive with as many ({_some(without)}): the master "
            f"dark is the newest of the dark table in {args.out / 'state'}, if it has one "
            "(else the overscan level is subtracted)"
        )
    for line in _left_out(scan.problems, every=args.dry_run):
        console.print(line, markup=False, highlight=False)


_LEFT_OUT_LISTED = 20
"""What the scan left out is said a line each up to this many (and always with --dry-run);
beyond, a line per kind of problem, with its first file."""


def _left_out(problems: Sequence[str], *, every: bool) -> list[str]:
    """The lines that say what the scan left out: an archive of years may have a stray
    file in each of its thousands of directories, which would bury the rest."""
    if every or len(problems) <= _LEFT_OUT_LISTED:
        return [f"left out: {problem}" for problem in problems]
    with imports_uninterrupted():
        from mascara_actors.summary.report import problem_pattern
    kinds: dict[str, list[str]] = {}
    for problem in problems:
        kinds.setdefault(problem_pattern(problem), []).append(problem)
    lines = [f"left out: {same[0]}" + (f" (and {len(same) - 1:,} more like it)"
                                         if len(same) > 1 else "")
             for same in kinds.values()]
    return [*lines, f"left out: {len(problems):,} in all; --dry-run lists every one"]


def _nothing_chosen(scan: ArchiveScan, root: Path) -> str:
    """Why no camera-night was chosen, with what there was to choose from."""
    if not scan.available:
        return (f"no camera-night to reduce under {root}: no raw science frame was found "
                f"there{' (see what was left out above)' if scan.problems else ''}; check "
                "the path")
    cams = sorted({camera for camera, _ in scan.available})
    nights = sorted({night for _, night in scan.available})
    # the scan chooses every night found unless --nights or --cameras leave them out
    return (f"no camera-night matches --nights/--cameras ({len(scan.available)} under {root}: "
            f"cameras {', '.join(cams)}, {_span(nights)}): check the filters")


_NOTES_EACH = 5
"""Nights named one by one in a note; the others are counted (an archive of years has
thousands)."""


def _some(keys: list[str]) -> str:
    """The first few of ``keys``, and how many more."""
    more = len(keys) - _NOTES_EACH
    return ", ".join(keys[:_NOTES_EACH]) + (f" and {more} more" if more > 0 else "")


def _span(nights: list[str]) -> str:
    """``night A`` or ``nights A to B`` of sorted night names."""
    return f"night {nights[0]}" if nights[0] == nights[-1] else (
        f"nights {nights[0]} to {nights[-1]}")


def _table(title: str, *columns: str) -> Table:
    """A line per camera-night, narrow enough for an 80-column terminal: long texts (why a
    night failed or would be refused) go below it, on lines of their own."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _print_table(console: Console, table: Table, notes: list[str]) -> None:
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)


def _plan_table(nights: tuple[CameraNight, ...], out: Path, config_dir: Path
                ) -> tuple[Table, list[str]]:
    """What a run would do with each night (from the records on disk; products are verified
    by the run itself), and why it would refuse the nights it would."""
    from mascara_actors.app.archive.task import frames_changed
    from mascara_actors.storage.provenance import config_hash, read_provenance

    here = config_hash(config_dir)
    table = _table(f"would reduce into {out}", "night", "camera", "frames", "darks", "would")
    notes = []
    for n in nights:
        why = ""
        try:
            record = read_provenance(out / n.key)
        except StorageError as exc:
            action, why = "refuse", str(exc)
        else:
            if record is None:
                action = "reduce"
            elif not record.made_here(here):
                action, why = "refuse", f"holds a reduction by {record.describe()}"
            elif record.status == "complete":
                why = frames_changed(n, record.raw_frames)
                action = "refuse" if why else "verify (complete)"
            else:
                action = "resume"
        if why:
            notes.append(f"{n.night} {n.camera_id} would be refused: {why}")
        darks = f"{len(n.darks)}" + (f" (+{len(n.borrowed.paths)} of {n.borrowed.night})"
                                     if n.borrowed else "")
        table.add_row(n.night, n.camera_id, str(n.science), darks, action)
    return table, notes


_TABLE_ALL_UP_TO = 40
"""A run of more camera-nights lists only those not reduced or verified (the manifest has
them all): the table of an archive of years would be thousands of lines."""


def _outcome_table(outcomes: list[NightOutcome], out: Path) -> tuple[Table, list[str]]:
    """A line per camera-night (per night not done, in a large run), and the error of each
    night that has one; a night whose frames failed or that logged warnings says where they
    are named (its report, or its event log when it has none)."""
    from mascara_actors.storage.layout import event_log_path, report_path, summary_dir

    title = "camera-nights"
    if len(outcomes) > _TABLE_ALL_UP_TO:
        outcomes = [o for o in outcomes if o.status not in ("reduced", "verified")]
        title = f"camera-nights not done ({len(outcomes)}; the manifest has every night)"
    table = _table(title, "night", "camera", "status", "reduced", "failed", "wall s",
                   "worker")
    for o in outcomes:
        table.add_row(o.night, o.camera, o.status, f"{o.reduced}/{o.frames}", str(o.failed),
                      f"{o.wall_s:.1f}", o.worker.split("://", 1)[-1])
    notes = []
    for o in outcomes:
        if o.error:
            notes.append(f"{o.night} {o.camera} {o.status}: {o.error}")
        if o.failed or o.warnings:
            where = report_path(summary_dir(out / o.key), o.key, ".txt")
            if o.status != "reduced" or not where.is_file():
                where = event_log_path(out / o.key)
            what = [f"{counted(o.failed, 'frame')} could not be reduced (unreadable, no "
                    "stars...)"] if o.failed else []
            if o.warnings:
                what.append(f"{counted(o.warnings, 'warning')} (its masters, a resumed "
                            "night...)")
            notes.append(f"{o.night} {o.camera}: {' and '.join(what)}: which and why in "
                         f"{where}")
    return table, notes


def _print_totals(console: Console, outcomes: list[NightOutcome], workers: int) -> None:
    from mascara_actors.sidereal import slot_length_solar_s

    reduced = sum(o.reduced for o in outcomes)
    busy = sum(o.wall_s for o in outcomes if o.reduced)
    counts = {s: sum(o.status == s for o in outcomes) for s in {o.status for o in outcomes}}
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if busy > 0:
        console.print(
            f"{reduced} frames reduced, {reduced * slot_length_solar_s() / busy:.1f} x real "
            f"time per worker ({counted(workers, 'worker')})"
        )
