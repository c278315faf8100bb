"""The experimental design of a run: which file is which patient, timepoint and tube.

A run folder holds FCS files and, usually, ``manifest.csv`` (columns ``file``, ``patient``,
``timepoint``, ``tube`` and optionally ``wbc_per_ul``, ``beads_per_ul`` (or ``beads_per_tube``
and ``sample_ul``), ``cohort``). Without a
manifest the design comes from FCS keywords or from file-name patterns named in the run config
(``cytogate.yaml`` in the run folder, or ``--config``). The config also holds the timepoint
order, the baseline, the comparisons, the MFI statistic, the test and the correction; with no
config at all the defaults reproduce the mobilisation study (docs/architecture.md §5).

Problems that make the design ambiguous (a manifest row naming a missing file, a duplicate
row, an unknown timepoint or tube, a bad number) are collected — all of them, with line
numbers — and raised together as one :class:`DesignError`. Problems that only cost a measure
(a stained tube without its isotype, a file the manifest does not name) are warnings.
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

STUDY_TIMEPOINTS = ("baseline", "day3", "2h", "4h", "6h", "24h")
STAINED = "stained"
MANIFEST_NAME = "manifest.csv"
CONFIG_NAME = "cytogate.yaml"
FCS_SUFFIXES = (".fcs", ".lmd")

MfiStatistic = Literal["mean", "median", "geomean"]
DesignSource = Literal["auto", "manifest", "keywords", "filename"]


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
    rmfi_markers: tuple[str, ...] = ("CXCR4_12G5", "CXCR4_1D9", "CD114", "CD49f")
    positivity_markers: tuple[str, ...] = ("Ki67",)
    marker_populations: tuple[str, ...] = ("blasts",)
    count_populations: tuple[str, ...] = ("leukocytes", "blasts")
    design_source: DesignSource = "auto"
    design_keywords: tuple[tuple[str, str], ...] = tuple(DEFAULT_DESIGN_KEYWORDS.items())
    filename_pattern: str = r"^(?P<patient>[^_]+)_(?P<timepoint>[^_]+)_(?P<tube>[^_.]+)\.(fcs|lmd)$"
    #: seconds a file may take (read, gate, quantify) before it counts as failed; None: no limit
    file_time_limit_s: float | None = None
    path: str | None = None  # where the config came from (None = defaults)

    @property
    def tubes(self) -> tuple[str, str]:
        return (STAINED, self.control_tube)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, recorded in run.json."""
        out = asdict(self)
        out["design_keywords"] = dict(self.design_keywords)
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
    """One input file and what it is."""

    file: Path
    patient: str
    timepoint: str
    tube: str
    wbc_per_ul: float | None = None
    beads_per_ul: float | None = None
    cohort: str = ""
    line: int | None = None  # manifest line (1 = header), None when not from a manifest
    relpath: str = ""  # the path as given, relative to the run folder ("" = the file's name)

    @property
    def name(self) -> str:
        """How the tables name the file: its path relative to the run folder."""
        return self.relpath or self.file.name


@dataclass(frozen=True)
class SampleGroup:
    """The tubes of one patient at one timepoint: the stained tube and its matched control."""

    patient: str
    timepoint: str
    stained: DesignRow | None
    control: DesignRow | None


@dataclass
class Design:
    rows: list[DesignRow]
    source: str
    warnings: list[str] = field(default_factory=list)
    #: files the design could not place (unreadable keywords, no manifest): (path, reason);
    #: each is reported failed while the others are processed
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def groups(self, config: RunConfig) -> list[SampleGroup]:
        """Stained + control tube per patient × timepoint, in patient then timepoint order."""
        order = {tp: i for i, tp in enumerate(config.timepoints)}
        by_key: dict[tuple[str, str], dict[str, DesignRow]] = {}
        for row in self.rows:
            by_key.setdefault((row.patient, row.timepoint), {})[row.tube] = row
        keys = sorted(by_key, key=lambda k: (k[0], order.get(k[1], len(order))))
        return [
            SampleGroup(p, t, by_key[(p, t)].get(STAINED), by_key[(p, t)].get(config.control_tube))
            for p, t in keys
        ]


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
    else:
        design = _design_from_keywords(run_dir, config, strict=False)
        if design is None:
            design = _design_from_filenames(run_dir, config)
    assert design is not None
    design.warnings.extend(_pairing_warnings(design, config))
    return design


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
    problems: list[str] = []
    rows: list[DesignRow] = []
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
        if tube and tube not in config.tubes:
            row_problems.append(
                f"{where}: unknown tube {tube!r} (known: {', '.join(config.tubes)})"
            )
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
        if row_problems or file_path is None:
            problems.extend(row_problems)
            continue
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
            )
        )
    if problems:
        raise DesignError("manifest problems:\n  " + "\n  ".join(problems))
    if not rows:
        raise DesignError(f"{path}: the manifest lists no files")
    design = Design(rows, f"manifest {path.name}")
    listed = {r.file.resolve() for r in rows}
    for extra in list_fcs_files(run_dir):
        if extra.resolve() not in listed:
            design.warnings.append(
                f"{extra.name}: in the run folder but not in {path.name}; not processed"
            )
    return design


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
        if group.stained is not None and group.control is None:
            yield (
                f"{group.stained.file.name}: stained tube without its {config.control_tube} "
                f"tube (patient {group.patient}, {group.timepoint}); RMFI and % positive "
                "will be NaN"
            )
        if group.stained is None and group.control is not None:
            yield (
                f"{group.control.file.name}: {config.control_tube} tube without its stained "
                f"tube (patient {group.patient}, {group.timepoint})"
            )
