"""The experimental design of a run: which file is which patient, timepoint and tube.

A run folder holds FCS files and, usually, ``manifest.csv`` (columns ``file``, ``patient``,
``timepoint``, ``tube`` and optionally ``wbc_per_ul``, ``beads_per_ul`` (or ``beads_per_tube``
and ``sample_ul``), ``cohort``; for a multi-tube panel ``role``, ``control_for``, ``fmo_marker``:
docs/multitube.md). A draw (patient × timepoint) holds any number of stained tubes, each with
its controls (:class:`SampleGroup`, :class:`TubeSet`). Without a
manifest the design comes from FCS keywords or from file-name patterns named in the run config
(``cytogate.yaml`` in the run folder, or ``--config``). The config also holds the timepoint
order, the baseline, the comparisons, the MFI statistic, the test and the correction; with no
config at all the defaults reproduce the mobilisation study (docs/architecture.md §5).

Problems that make the design ambiguous (a manifest row naming a missing file, a duplicate
row, an unknown timepoint, tube or role, a control for a tube that does not exist, two controls
of one kind for one tube, an FMO without its marker, a bad number) are collected — all of
them, with line numbers — and raised together as one :class:`DesignError`. Problems that only
cost a measure (a stained tube without its isotype, a file the manifest does not name) are
warnings.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from cytogate.errors import CytogateError, DesignError
from cytogate.study.config import DEFAULT_DESIGN_KEYWORDS, validate_config
from cytogate.study.design_rules import DesignRules

STUDY_TIMEPOINTS = ("baseline", "day3", "2h", "4h", "6h", "24h")
STAINED = "stained"
#: what a tube is in a draw: the stained tube of a panel, or one of its controls
Role = Literal["stained", "isotype", "fmo", "unstained"]
ROLES: tuple[str, ...] = ("stained", "isotype", "fmo", "unstained")
CONTROL_ROLES: tuple[str, ...] = ("isotype", "fmo", "unstained")
MANIFEST_NAME = "manifest.csv"
CONFIG_NAME = "cytogate.yaml"
FCS_SUFFIXES = (".fcs", ".lmd")

MfiStatistic = Literal["mean", "median", "geomean"]
DesignSource = Literal["auto", "manifest", "keywords", "filename", "rules"]


@dataclass(frozen=True)
class RunConfig:
    """Everything about a run that is not in the files; defaults = the study (architecture §5)."""

    timepoints: tuple[str, ...] = STUDY_TIMEPOINTS
    baseline: str = "baseline"
    # [[timepoint, reference], ...]; None = every timepoint vs baseline, then consecutive pairs
    comparisons: tuple[tuple[str, str], ...] | None = None
    template: str = "aml_blasts_cd45_ssc"
    mfi_statistic: MfiStatistic = "median"
    test: Literal["paired_t", "ratio_t", "wilcoxon"] = "paired_t"
    correction: Literal["none", "holm", "bh"] = "none"
    min_events: int = 50
    positivity_percentile: float = 99.0
    control_tube: str = "isotype"
    #: marker -> the kind of control its RMFI / % positive is taken against (default: isotype,
    #: or the role of ``control_tube`` when that names one)
    marker_controls: tuple[tuple[str, str], ...] = ()
    #: marker -> the stained tube it is quantified from, when several stained tubes carry it
    marker_tubes: tuple[tuple[str, str], ...] = ()
    rmfi_markers: tuple[str, ...] = ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")
    positivity_markers: tuple[str, ...] = ("Ki67",)
    marker_populations: tuple[str, ...] = ("blasts",)
    count_populations: tuple[str, ...] = ("leukocytes", "blasts")
    design_source: DesignSource = "auto"
    design_keywords: tuple[tuple[str, str], ...] = tuple(DEFAULT_DESIGN_KEYWORDS.items())
    filename_pattern: str = r"^(?P<patient>[^_]+)_(?P<timepoint>[^_]+)_(?P<tube>[^_.]+)\.(fcs|lmd)$"
    #: the config's ``design:`` rules (keywords/file-name rules, preset); None = none given
    design_rules: DesignRules | None = None
    #: seconds a file may take (read, gate, quantify) before it counts as failed; None: no limit
    file_time_limit_s: float | None = None
    path: str | None = None  # where the config came from (None = defaults)

    @property
    def tubes(self) -> tuple[str, str]:
        """The tube names of a two-tube design (no ``role`` column): stained + its control."""
        return (STAINED, self.control_tube)

    @property
    def legacy_control_role(self) -> str:
        """The role of a two-tube design's control tube: its name when that is a control
        kind (``isotype``, ``fmo``, ``unstained``), else ``isotype``."""
        return self.control_tube if self.control_tube in CONTROL_ROLES else "isotype"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, recorded in run.json."""
        out = asdict(self)
        out["design_keywords"] = dict(self.design_keywords)
        out["marker_controls"] = dict(self.marker_controls)
        out["marker_tubes"] = dict(self.marker_tubes)
        return out


def load_config(run_dir: Path, config_path: Path | None = None) -> RunConfig:
    """The run config: ``config_path``, else ``run_dir/cytogate.yaml``, else defaults.

    Only the documented fields, types and ranges are accepted (see :mod:`cytogate.study.config`);
    any other value is one :class:`DesignError` line naming the file and the field.
    """
    from cytogate.yamlsafe import load_yaml

    path = config_path or (run_dir / CONFIG_NAME)
    if config_path is None and not path.is_file():
        return RunConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DesignError(f"{path}: cannot read run config: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise DesignError(f"{path}: run config is not UTF-8 text ({exc.reason})") from exc
    try:
        doc = load_yaml(text, str(path))
    except CytogateError as exc:
        raise DesignError(str(exc)) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise DesignError(f"{path}: a run config is a YAML mapping")
    values = validate_config(doc, str(path))
    config = replace(RunConfig(), path=str(path), **values)
    _check_config(config, path)
    return config


def _check_config(config: RunConfig, path: Path) -> None:
    """Cross-field checks: the baseline and comparisons name timepoints; the pattern works."""
    from cytogate.userregex import compile_user_regex

    def bad(fieldname: str, why: str) -> DesignError:
        return DesignError(f"{path}: field '{fieldname}': {why}")

    if config.baseline not in config.timepoints:
        raise bad("baseline", f"{config.baseline!r} is not one of timepoints {config.timepoints}")
    for a, b in config.comparisons or ():
        for tp in (a, b):
            if tp not in config.timepoints:
                raise bad("comparisons", f"{tp!r} is not one of timepoints {config.timepoints}")
        if a == b:
            raise bad("comparisons", f"compares timepoint {a!r} with itself")
    if len(set(config.comparisons or ())) != len(config.comparisons or ()):
        raise bad("comparisons", "the same comparison is listed twice")
    if config.control_tube == STAINED:
        raise bad("control_tube", f"must differ from {STAINED!r}")
    try:
        pattern = compile_user_regex(config.filename_pattern, f"{path}: field 'filename_pattern'")
    except CytogateError as exc:
        raise DesignError(str(exc)) from exc
    missing = {"patient", "timepoint", "tube"} - set(pattern.groupindex)
    if missing:
        raise bad("filename_pattern", f"needs named groups {', '.join(sorted(missing))}")


# --------------------------------------------------------------------------- design


@dataclass(frozen=True)
class DesignRow:
    """One input file and what it is.

    ``tube`` is the tube's name in the lab's panel (``CXCR4``, ``Ki67 isotype``; a two-tube
    design names them ``stained`` and ``isotype``). ``role`` says what the tube is; left empty
    it follows from the name as in a two-tube design (``stained`` -> stained; ``isotype``,
    ``fmo``, ``unstained`` -> that control; any other name -> stained). ``control_for`` names
    the stained tube a control belongs to ("" = the draw's only stained tube); ``fmo_marker``
    the marker an FMO control leaves out ("" = a two-tube design's FMO, used for every marker).
    """

    file: Path
    patient: str
    timepoint: str
    tube: str
    wbc_per_ul: float | None = None
    beads_per_ul: float | None = None
    cohort: str = ""
    line: int | None = None  # manifest line (1 = header), None when not from a manifest
    relpath: str = ""  # the path as given, relative to the run folder ("" = the file's name)
    role: Role | Literal[""] = ""
    control_for: str = ""
    fmo_marker: str = ""

    def __post_init__(self) -> None:
        if not self.role:
            role = self.tube if self.tube in CONTROL_ROLES else STAINED
            object.__setattr__(self, "role", role)

    @property
    def name(self) -> str:
        """How the tables name the file: its path relative to the run folder."""
        return self.relpath or self.file.name

    @property
    def is_control(self) -> bool:
        return self.role != STAINED

    @property
    def where(self) -> str:
        """Where the row came from, for messages: ``manifest.csv: line 7`` or the file name."""
        return f"{MANIFEST_NAME}: line {self.line}" if self.line is not None else self.file.name


@dataclass(frozen=True)
class TubeSet:
    """A stained tube of one draw with its controls (isotype, FMOs, unstained)."""

    stained: DesignRow
    controls: tuple[DesignRow, ...] = ()

    def control(self, role: str, marker: str = "") -> DesignRow | None:
        """The control of kind ``role`` for ``marker``: for ``fmo`` the FMO that leaves that
        marker out (or a two-tube design's FMO without ``fmo_marker``)."""
        hits = [c for c in self.controls if c.role == role]
        if role == "fmo":
            exact = [c for c in hits if c.fmo_marker == marker]
            hits = exact or [c for c in hits if not c.fmo_marker]
        return hits[0] if hits else None

    @property
    def rows(self) -> tuple[DesignRow, ...]:
        return (self.stained, *self.controls)


@dataclass(frozen=True)
class SampleGroup:
    """The tubes of one draw (patient × timepoint): each stained tube with its controls.

    ``orphans`` are controls whose stained tube is missing from this draw (gated and counted,
    never a denominator). ``stained``/``control`` give a two-tube draw's pair.
    """

    patient: str
    timepoint: str
    tubes: tuple[TubeSet, ...] = ()
    orphans: tuple[DesignRow, ...] = ()

    @property
    def rows(self) -> tuple[DesignRow, ...]:
        """Every file of the draw: each stained tube followed by its controls, then orphans."""
        return (*(r for t in self.tubes for r in t.rows), *self.orphans)

    @property
    def stained(self) -> DesignRow | None:
        return self.tubes[0].stained if self.tubes else None

    @property
    def control(self) -> DesignRow | None:
        if self.tubes:
            return self.tubes[0].controls[0] if self.tubes[0].controls else None
        return self.orphans[0] if self.orphans else None


_ROLE_ORDER = {role: i for i, role in enumerate(ROLES)}


def _control_key(row: DesignRow) -> tuple[int, str, str]:
    return (_ROLE_ORDER.get(row.role, len(ROLES)), row.fmo_marker, row.tube)


@dataclass
class Design:
    rows: list[DesignRow]
    source: str
    warnings: list[str] = field(default_factory=list)
    #: files the design could not place (unreadable keywords, no manifest): (path, reason);
    #: each is reported failed while the others are processed
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def groups(self, config: RunConfig) -> list[SampleGroup]:
        """The draws in patient then timepoint order; in each, the stained tubes by name, each
        followed by its controls (isotype, FMO by marker, unstained)."""
        order = {tp: i for i, tp in enumerate(config.timepoints)}
        by_key: dict[tuple[str, str], list[DesignRow]] = {}
        for row in self.rows:
            by_key.setdefault((row.patient, row.timepoint), []).append(row)
        keys = sorted(by_key, key=lambda k: (k[0], order.get(k[1], len(order))))
        groups = []
        for patient, timepoint in keys:
            rows = by_key[(patient, timepoint)]
            stained = sorted((r for r in rows if not r.is_control), key=lambda r: r.tube)
            names = {r.tube for r in stained}
            only = stained[0].tube if len(stained) == 1 else None
            controls: dict[str, list[DesignRow]] = {r.tube: [] for r in stained}
            orphans = []
            for row in rows:
                if not row.is_control:
                    continue
                target = row.control_for or only
                if target in names:
                    controls[target].append(row)
                else:
                    orphans.append(row)
            tubes = tuple(
                TubeSet(s, tuple(sorted(controls[s.tube], key=_control_key))) for s in stained
            )
            groups.append(
                SampleGroup(patient, timepoint, tubes, tuple(sorted(orphans, key=_control_key)))
            )
        return groups

    def tube_order(self) -> dict[str, int]:
        """Tube name -> rank for sorting tables: stained tubes by name, each followed by its
        controls (a two-tube design: ``stained`` 0, its control 1)."""
        stained = sorted({r.tube for r in self.rows if not r.is_control})
        by_target: dict[str, set[tuple[int, str, str]]] = {}
        for r in self.rows:
            if r.is_control:
                target = r.control_for or (stained[0] if len(stained) == 1 else "")
                by_target.setdefault(target, set()).add(_control_key(r))
        ranked: list[str] = []
        for name in [*stained, ""]:
            if name:
                ranked.append(name)
            ranked += [key[2] for key in sorted(by_target.get(name, ()))]
        for other in sorted(by_target):  # controls of tubes no draw has
            ranked += [key[2] for key in sorted(by_target[other])]
        return {name: i for i, name in enumerate(dict.fromkeys(ranked))}


def check_draws(rows: list[DesignRow], config: RunConfig) -> tuple[list[str], list[str]]:
    """Cross-row checks of a design's draws: (problems, warnings), each naming its row.

    Problems: a control whose ``control_for`` names no stained tube of the run or, when left
    empty, a draw with several stained tubes to choose from; two controls of one kind (one FMO
    marker) for one stained tube of a draw. A control whose stained tube exists elsewhere in
    the run but not in its draw is a warning (the draw lacks that tube: missing data).
    """
    problems: list[str] = []
    warnings: list[str] = []
    stained_names = {r.tube for r in rows if not r.is_control}
    draws: dict[tuple[str, str], list[DesignRow]] = {}
    for row in rows:
        draws.setdefault((row.patient, row.timepoint), []).append(row)
    for (patient, tp), members in draws.items():
        stained = sorted({r.tube for r in members if not r.is_control})
        seen: dict[tuple[str, str, str], DesignRow] = {}
        for row in members:
            if not row.is_control:
                continue
            target = row.control_for
            if not target:
                if len(stained) > 1:
                    problems.append(
                        f"{row.where}: {row.role} tube {row.tube!r} of patient {patient} at {tp}:"
                        f" which stained tube does it control? The draw has {', '.join(stained)};"
                        " fill 'control_for'"
                    )
                    continue
                target = stained[0] if stained else ""
            elif target not in stained:
                if target in stained_names:
                    warnings.append(
                        f"{row.where}: {row.role} tube {row.tube!r} controls {target!r}, but "
                        f"patient {patient} at {tp} has no {target!r} tube; not used as a control"
                    )
                else:
                    known = ", ".join(sorted(stained_names)) or "none"
                    problems.append(
                        f"{row.where}: control_for {target!r} names no stained tube of patient "
                        f"{patient} at {tp} (stained tubes in the run: {known})"
                    )
                continue
            key = (target, row.role, row.fmo_marker)
            if target and key in seen:
                kind = f"fmo ({row.fmo_marker})" if row.fmo_marker else row.role
                problems.append(
                    f"{row.where}: a second {kind} control for tube {target!r} of patient "
                    f"{patient} at {tp} (first: {seen[key].where})"
                )
            seen[key] = row
    return problems, warnings


def list_fcs_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.iterdir() if p.is_file() and p.suffix.lower() in FCS_SUFFIXES)


def read_design(run_dir: Path, config: RunConfig) -> Design:
    """Build the design from the manifest, FCS keywords or file names (see the module doc)."""
    if not run_dir.is_dir():
        raise DesignError(f"{run_dir}: not a folder")
    manifest = run_dir / MANIFEST_NAME
    source = config.design_source
    if source == "auto":
        source = "manifest" if manifest.is_file() else "keywords_or_filename"
    if source == "manifest":
        design = read_manifest(manifest, run_dir, config)
    elif source == "keywords":
        design = _design_from_keywords(run_dir, config, strict=True)
    elif source == "filename":
        design = _design_from_filenames(run_dir, config)
    elif source == "rules" or config.design_rules is not None:
        design = _design_from_rules(run_dir, config)
    else:
        design = _design_from_keywords(run_dir, config, strict=False)
        if design is None:
            try:
                design = _design_from_filenames(run_dir, config)
            except DesignError:
                if not _software_known(run_dir):
                    raise
                design = _design_from_rules(run_dir, config)  # e.g. a FACSDiva export
    assert design is not None
    if source != "manifest":  # the manifest checks its draws itself, with the other problems
        design.rows = _linked([_legacy_role(r, config) for r in design.rows])
        problems, warnings = check_draws(design.rows, config)
        if problems:
            raise DesignError(f"design from {design.source}:\n  " + "\n  ".join(problems))
        design.warnings.extend(warnings)
    design.warnings.extend(_pairing_warnings(design, config))
    return design


def _legacy_role(row: DesignRow, config: RunConfig) -> DesignRow:
    """A two-tube design's control tube under a custom name (``control_tube: iso``) is a control."""
    if row.tube == config.control_tube and row.role == STAINED:
        return replace(row, role=config.legacy_control_role)  # type: ignore[arg-type]
    return row


MAX_PER_UL = 1e9  # beyond any blood count; keeps products like counts x wbc finite


def read_manifest(path: Path, run_dir: Path, config: RunConfig) -> Design:
    """Parse ``manifest.csv``; all problems are reported together with their line numbers.

    Every path must name a file inside the run folder (``../x``, absolute paths and symlinks
    pointing out are errors): a run's inputs are what its folder holds.
    """
    text = _manifest_text(path)
    lines = text.splitlines()
    reader = csv.reader(lines)
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise DesignError(f"{path}: line 1: {exc}") from exc
    required = ["file", "patient", "timepoint", "tube"]
    missing = [c for c in required if c not in header]
    if missing:
        raise DesignError(
            f"{path}: line 1: missing column(s) {', '.join(missing)} (have: {', '.join(header)})"
        )
    multi = bool(set(TUBE_COLUMNS) & set(header))
    problems: list[str] = []
    rows: list[DesignRow] = []
    drafts: list[DesignRow] = []  # every row with a tube, for the checks across a draw
    seen_files: dict[str, int] = {}
    seen_samples: dict[tuple[str, str, str], int] = {}
    root = run_dir.resolve()
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{path.name}: line {reader.line_num}: {exc}")
            break
        line = reader.line_num
        where = f"{path.name}: line {line}"
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
            problems.append(
                f"{where}: {len(cells)} fields, the header has {len(header)} (a comma in a "
                "value? quote it)"
            )
            continue
        rec = {h: c.strip() for h, c in zip(header, cells, strict=False)}
        row_problems = []
        for col in required:
            if not rec.get(col):
                row_problems.append(f"{where}: empty '{col}'")
        name = rec.get("file", "")
        file_path, problem = _inside(run_dir, root, name, where)
        if problem:
            row_problems.append(problem)
        key_name = Path(os.path.normpath(name)).as_posix() if name else name
        real = str(file_path) if file_path is not None else key_name
        if name and real in seen_files:
            row_problems.append(
                f"{where}: duplicate row for file {name} (first on line {seen_files[real]})"
            )
        tp, tube = rec.get("timepoint", ""), rec.get("tube", "")
        if tp and tp not in config.timepoints:
            row_problems.append(
                f"{where}: unknown timepoint {tp!r} (known: {', '.join(config.timepoints)})"
            )
        role, control_for, fmo_marker = _tube_columns(rec, tube, multi, config, where, row_problems)
        key = (rec.get("patient", ""), tp, tube)
        if all(key) and key in seen_samples:
            row_problems.append(
                f"{where}: a second {tube} tube for patient {key[0]} at {tp} (first on line "
                f"{seen_samples[key]})"
            )
        numbers = {}
        for col in ("wbc_per_ul", "beads_per_ul", "beads_per_tube", "sample_ul"):
            numbers[col], problem = _number(rec.get(col, ""), f"{where}: '{col}'")
            if problem:
                row_problems.append(problem)
        if numbers["beads_per_ul"] is None and numbers["beads_per_tube"] and numbers["sample_ul"]:
            numbers["beads_per_ul"] = numbers["beads_per_tube"] / numbers["sample_ul"]
        drafted = DesignRow(
            run_dir / key_name,
            key[0],
            tp,
            tube,
            line=line,
            role=role,
            control_for=control_for,
            fmo_marker=fmo_marker,
        )
        if row_problems or file_path is None:
            problems.extend(row_problems)
            if tube and role and key not in seen_samples:
                drafts.append(drafted)  # its draw is still checked (all problems at once)
            continue
        drafts.append(drafted)
        seen_files[real] = line
        seen_samples[key] = line
        rows.append(
            DesignRow(
                run_dir / key_name,
                key[0],
                tp,
                tube,
                numbers["wbc_per_ul"],
                numbers["beads_per_ul"],
                rec.get("cohort", ""),
                line,
                key_name,
                role,
                control_for,
                fmo_marker,
            )
        )
    draw_problems, draw_warnings = check_draws(drafts, config)
    problems += draw_problems
    problems.sort(key=_line_of)
    if problems:
        raise DesignError("manifest problems:\n  " + "\n  ".join(problems))
    if not rows:
        raise DesignError(f"{path}: the manifest lists no files")
    rows = _linked(rows)
    design = Design(rows, f"manifest {path.name}", warnings=draw_warnings)
    listed = {r.file.resolve() for r in rows}
    for extra in list_fcs_files(run_dir):
        if extra.resolve() not in listed:
            design.warnings.append(
                f"{extra.name}: in the run folder but not in {path.name}; not processed"
            )
    return design


#: optional manifest columns of a multi-tube design (any tube name is then allowed)
TUBE_COLUMNS = ("role", "control_for", "fmo_marker")


def _tube_columns(
    rec: Mapping[str, str],
    tube: str,
    multi: bool,
    config: RunConfig,
    where: str,
    problems: list[str],
) -> tuple[Role | Literal[""], str, str]:
    """A manifest row's role, control_for and fmo_marker; problems appended with ``where``.

    Without the multi-tube columns the tube must be ``stained`` or the config's control tube,
    as in a two-tube design; with them any tube name goes and an empty role follows the name.
    """
    role_text = rec.get("role", "")
    control_for, fmo_marker = rec.get("control_for", ""), rec.get("fmo_marker", "")
    if not tube:
        return "", control_for, fmo_marker
    if role_text and role_text not in ROLES:
        problems.append(f"{where}: unknown role {role_text!r} (known: {', '.join(ROLES)})")
        return "", control_for, fmo_marker
    if role_text:
        role = role_text
    elif tube == STAINED:
        role = STAINED
    elif tube == config.control_tube:
        role = config.legacy_control_role
    elif multi:
        role = tube if tube in CONTROL_ROLES else STAINED
    else:
        problems.append(
            f"{where}: unknown tube {tube!r} (known: {', '.join(config.tubes)}; a multi-tube "
            "panel names its tubes with a 'role' column)"
        )
        return "", control_for, fmo_marker
    if role == STAINED and control_for:
        problems.append(
            f"{where}: control_for {control_for!r} on stained tube {tube!r} (only a control "
            "names the stained tube it controls)"
        )
    if role == "fmo" and not fmo_marker and role_text:
        problems.append(f"{where}: fmo tube {tube!r} without 'fmo_marker' (the marker it omits)")
    if role != "fmo" and fmo_marker:
        problems.append(
            f"{where}: fmo_marker {fmo_marker!r} on a {role} tube (only an fmo control omits "
            "a marker)"
        )
    return role, control_for, fmo_marker  # type: ignore[return-value]


def _line_of(problem: str) -> int:
    """The line number a manifest problem names (problems are listed in line order)."""
    _, _, rest = problem.partition(": line ")
    digits = rest.split(":", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _linked(rows: list[DesignRow]) -> list[DesignRow]:
    """Rows with each control's ``control_for`` filled in where its draw has one stained tube."""
    stained: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if not r.is_control:
            stained.setdefault((r.patient, r.timepoint), []).append(r.tube)
    out = []
    for r in rows:
        names = stained.get((r.patient, r.timepoint), [])
        if r.is_control and not r.control_for and len(names) == 1:
            r = replace(r, control_for=names[0])
        out.append(r)
    return out


def _manifest_text(path: Path) -> str:
    """The manifest decoded: UTF-8 (with or without BOM) or UTF-16 with its BOM; else refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DesignError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DesignError(f"{path}: broken UTF-16 at byte {exc.start}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DesignError(
            f"{path}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x}; Latin-1 or "
            "Windows-1252?); save the manifest as UTF-8 CSV"
        ) from None


def _inside(run_dir: Path, root: Path, name: str, where: str) -> tuple[Path | None, str | None]:
    """The manifest's ``file`` resolved inside the run folder, or why it is not."""
    if not name:
        return None, None
    given = Path(name)
    if given.is_absolute() or name.startswith(("/", "\\")) or ":" in given.parts[0]:
        return None, f"{where}: file {name} is an absolute path; give it relative to {run_dir}"
    if ".." in given.parts:
        return None, f"{where}: file {name} points outside the run folder {run_dir}"
    try:
        real = (run_dir / given).resolve(strict=True)
    except (FileNotFoundError, RuntimeError, OSError):
        return None, f"{where}: file {name} does not exist in {run_dir}"
    if root not in real.parents:
        return None, f"{where}: file {name} is a link to {real}, outside the run folder {run_dir}"
    if not real.is_file():
        return None, f"{where}: file {name} is not a file"
    return real, None


def _number(text: str, where: str) -> tuple[float | None, str | None]:
    if text == "":
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"{where}: {text!r} is not a number"
    if not math.isfinite(value) or not 0 <= value <= MAX_PER_UL:
        return None, f"{where}: {text!r} must be a number from 0 to {MAX_PER_UL:g}"
    return value, None


def _design_from_keywords(run_dir: Path, config: RunConfig, strict: bool) -> Design | None:
    """Design from FCS keywords (e.g. CYTOGATE_PATIENT); None if files lack them (not strict)."""
    from cytogate.errors import FCSError
    from cytogate.io.fcs import read_keywords

    names = dict(config.design_keywords)
    rows, problems = [], []
    unreadable: list[tuple[Path, str]] = []
    for path in list_fcs_files(run_dir):
        try:
            kw = read_keywords(path)
        except FCSError as exc:  # that file fails; the others are still processed
            unreadable.append((path, str(exc)))
            continue
        values = {role: kw.get(key.upper(), "").strip() for role, key in names.items()}
        missing = [names[role] for role, v in values.items() if not v]
        if missing:
            if not strict:
                return None
            problems.append(f"{path.name}: no keyword(s) {', '.join(missing)}")
            continue
        rows.append(
            DesignRow(
                path,
                values["patient"],
                values["timepoint"],
                values["tube"],
                _kw_number(kw, "WBC_PER_UL"),
                _kw_number(kw, "BEADS_PER_UL"),
            )
        )
    if not rows and not strict:
        return None
    design = _checked(rows, problems, f"FCS keywords {', '.join(names.values())}", config)
    design.unreadable = unreadable
    return design


def _kw_number(keywords: Mapping[str, str], key: str) -> float | None:
    value, problem = _number(keywords.get(key, "").strip(), key)
    return None if problem else value


def _design_from_filenames(run_dir: Path, config: RunConfig) -> Design:
    from cytogate.userregex import compile_user_regex

    pattern = compile_user_regex(config.filename_pattern, "run config field 'filename_pattern'")
    rows, problems = [], []
    for path in list_fcs_files(run_dir):
        match = pattern.search(path.name)
        if not match:
            problems.append(f"{path.name}: file name does not match {config.filename_pattern}")
            continue
        rows.append(DesignRow(path, match["patient"], match["timepoint"], match["tube"]))
    return _checked(rows, problems, f"file names ({config.filename_pattern})", config)


@dataclass(frozen=True)
class PlacedFile:
    """A file the design rules placed: its row and where each field came from."""

    row: DesignRow
    sources: dict[str, str]
    preset: str  # the preset its rules came from ("" = the config's rules alone)


@dataclass
class Inference:
    """What the design rules made of a run folder (``cytogate design`` prints it).

    ``unplaced``: files without a patient, timepoint or tube, or with a value the run cannot
    use, each with the reason; ``problems``: draws that do not hold together (a control for a
    tube the draw lacks...), each naming its file; ``unreadable``: files whose keywords cannot
    be read (a batch reports them failed and goes on).
    """

    placed: list[PlacedFile]
    unplaced: list[tuple[Path, str]]
    problems: list[str]
    warnings: list[str]
    unreadable: list[tuple[Path, str]]
    source: str

    @property
    def rows(self) -> list[DesignRow]:
        return [p.row for p in self.placed]

    @property
    def ok(self) -> bool:
        return not (self.unplaced or self.problems or self.unreadable)


#: manifest columns ``cytogate design --write`` writes (read back by :func:`read_manifest`)
MANIFEST_COLUMNS = (
    "file",
    "patient",
    "timepoint",
    "tube",
    "role",
    "control_for",
    "fmo_marker",
    "wbc_per_ul",
    "cohort",
)


def infer_design(run_dir: Path, config: RunConfig) -> Inference:
    """Place every FCS file of ``run_dir`` by the config's design rules (or the preset of the
    software that wrote it); nothing is raised for a file that cannot be placed: it is listed.
    """
    from cytogate.errors import FCSError
    from cytogate.io.fcs import read_keywords
    from cytogate.study.design_rules import default_rules, detect_preset, evaluate

    if not run_dir.is_dir():
        raise DesignError(f"{run_dir}: not a folder")
    rules = config.design_rules or default_rules()
    placed: list[PlacedFile] = []
    unplaced: list[tuple[Path, str]] = []
    unreadable: list[tuple[Path, str]] = []
    seen: dict[tuple[str, str, str], str] = {}
    presets: set[str] = set()
    for path in list_fcs_files(run_dir):
        try:
            kw = read_keywords(path)
        except FCSError as exc:
            unreadable.append((path, str(exc)))
            continue
        preset = rules.preset if rules.preset != "auto" else detect_preset(kw)
        found = evaluate(rules.for_preset(preset), kw, path.name, config.timepoints)
        reasons = list(found.problems)
        if reasons and preset is None and not dict(rules.fields):
            reasons.append(
                "acquisition software not recognised (CREATOR "
                f"{kw.get('CREATOR', '')!r}, $CYT {kw.get('$CYT', '')!r}): give design rules "
                "in the run config (docs/designs.md)"
            )
        v = found.values
        wbc, problem = _number(
            v.get("wbc_per_ul", ""), f"wbc_per_ul ({found.sources.get('wbc_per_ul')})"
        )
        if problem:
            reasons.append(problem)
        if not reasons:
            key = (v["patient"], v["timepoint"], v["tube"])
            if key in seen:
                reasons.append(
                    f"a second {key[2]!r} tube for patient {key[0]} at {key[1]} (also {seen[key]})"
                )
            else:
                seen[key] = path.name
        if reasons:
            unplaced.append((path, "; ".join(reasons)))
            continue
        presets.add(preset or "")
        row = DesignRow(
            path,
            v["patient"],
            v["timepoint"],
            v["tube"],
            wbc,
            None,
            v.get("cohort", ""),
            role=v["role"],  # type: ignore[arg-type]
            control_for=v["control_for"],
            fmo_marker=v["fmo_marker"],
        )
        placed.append(PlacedFile(row, found.sources, preset or ""))
    linked = _linked([p.row for p in placed])
    for i, (p, row) in enumerate(zip(placed, linked, strict=True)):
        if row.control_for != p.row.control_for:
            sources = {**p.sources, "control_for": "the draw's only stained tube"}
            placed[i] = PlacedFile(row, sources, p.preset)
    problems, warnings = check_draws(linked, config)
    names = sorted(x for x in presets if x)
    own = config.design_rules is not None and config.path
    where = f"design rules of {config.path}" if own else "design rules"
    source = f"{where} (preset {', '.join(names)})" if names else where
    return Inference(placed, unplaced, problems, warnings, unreadable, source)


def manifest_text(rows: Iterable[DesignRow]) -> str:
    """A ``manifest.csv`` of ``rows`` (:data:`MANIFEST_COLUMNS`), read back as the same design."""
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for r in rows:
        wbc = "" if r.wbc_per_ul is None else f"{r.wbc_per_ul:g}"
        writer.writerow(
            [r.name, r.patient, r.timepoint, r.tube, r.role, r.control_for, r.fmo_marker, wbc,
             r.cohort]
        )  # fmt: skip
    return buf.getvalue()


def _design_from_rules(run_dir: Path, config: RunConfig) -> Design:
    inference = infer_design(run_dir, config)
    if inference.unplaced:
        lines = [f"{p.name}: {why}" for p, why in inference.unplaced]
        shown = lines[:20] + ([f"… and {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise DesignError(
            f"design from {inference.source}: {len(lines)} file(s) cannot be placed (see "
            "`cytogate design`):\n  " + "\n  ".join(shown)
        )
    if not inference.placed and not inference.unreadable:
        raise DesignError(f"no FCS files and no {MANIFEST_NAME} found")
    design = Design(inference.rows, inference.source, warnings=list(inference.warnings))
    design.unreadable = inference.unreadable
    return design


def _software_known(run_dir: Path) -> bool:
    """Whether some file of the run was written by software a design preset knows."""
    from cytogate.errors import FCSError
    from cytogate.io.fcs import read_keywords
    from cytogate.study.design_rules import detect_preset

    for path in list_fcs_files(run_dir):
        try:
            if detect_preset(read_keywords(path)) not in (None, "cytogate"):
                return True
        except FCSError:
            continue
    return False


def _checked(rows: list[DesignRow], problems: list[str], source: str, config: RunConfig) -> Design:
    seen: dict[tuple[str, str, str], str] = {}
    for row in rows:
        if row.timepoint not in config.timepoints:
            problems.append(
                f"{row.file.name}: unknown timepoint {row.timepoint!r} (known: "
                f"{', '.join(config.timepoints)})"
            )
        if row.tube not in config.tubes:
            problems.append(
                f"{row.file.name}: unknown tube {row.tube!r} (known: {', '.join(config.tubes)})"
            )
        key = (row.patient, row.timepoint, row.tube)
        if key in seen:
            problems.append(
                f"{row.file.name}: a second {row.tube} tube for patient "
                f"{row.patient} at {row.timepoint} (also {seen[key]})"
            )
        seen[key] = row.file.name
    if problems:
        raise DesignError(f"design from {source}:\n  " + "\n  ".join(problems))
    if not rows:
        raise DesignError(f"no FCS files and no {MANIFEST_NAME} found")
    return Design(rows, source)


def _pairing_warnings(design: Design, config: RunConfig) -> Iterable[str]:
    if not (config.rmfi_markers or config.positivity_markers):
        return  # no measure needs a control tube (e.g. CD34 enumeration)
    for group in design.groups(config):
        for tubes in group.tubes:
            if tubes.controls:
                continue
            row = tubes.stained
            what = "tube" if row.tube == STAINED else f"tube {row.tube!r}"
            kind = config.control_tube if row.tube == STAINED else "control"
            yield (
                f"{row.file.name}: stained {what} without its {kind} tube (patient "
                f"{group.patient}, {group.timepoint}); RMFI and % positive will be NaN"
            )
        for row in group.orphans:
            if row.control_for and row.control_for != STAINED:
                continue  # check_draws said so, naming the missing tube
            yield (
                f"{row.file.name}: {row.tube} tube without its stained tube "
                f"(patient {group.patient}, {group.timepoint})"
            )
