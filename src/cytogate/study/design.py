"""The experimental design of a run: which file is which patient, timepoint and tube.

A run folder holds FCS files and, usually, ``manifest.csv`` (columns ``file``, ``patient``,
``timepoint``, ``tube`` and optionally ``wbc_per_ul``, ``beads_per_ul`` (or ``beads_per_tube``
and ``sample_ul``), ``cohort``). Without a
manifest the design comes from FCS keywords or from file-name patterns named in the run config
(``cytogate.yaml`` in the run folder, or ``--config``). The config also holds the timepoint
order, the baseline, the comparisons, the MFI statistic, the test and the correction; with no
config at all the defaults reproduce the mobilisation study (DESIGN §5).

Problems that make the design ambiguous (a manifest row naming a missing file, a duplicate
row, an unknown timepoint or tube, a bad number) are collected — all of them, with line
numbers — and raised together as one :class:`DesignError`. Problems that only cost a measure
(a stained tube without its isotype, a file the manifest does not name) are warnings.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from cytogate.errors import DesignError

STUDY_TIMEPOINTS = ("baseline", "day3", "2h", "4h", "6h", "24h")
STAINED = "stained"
MANIFEST_NAME = "manifest.csv"
CONFIG_NAME = "cytogate.yaml"
FCS_SUFFIXES = (".fcs", ".lmd")

MfiStatistic = Literal["mean", "median", "geomean"]
DesignSource = Literal["auto", "manifest", "keywords", "filename"]


@dataclass(frozen=True)
class RunConfig:
    """Everything about a run that is not in the files. Defaults = the study in DESIGN §5."""

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
    design_keywords: tuple[tuple[str, str], ...] = (
        ("patient", "CYTOGATE_PATIENT"),
        ("timepoint", "CYTOGATE_TIMEPOINT"),
        ("tube", "CYTOGATE_TUBE"),
    )
    filename_pattern: str = r"^(?P<patient>[^_]+)_(?P<timepoint>[^_]+)_(?P<tube>[^_.]+)\.(fcs|lmd)$"
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
    """The run config: ``config_path``, else ``run_dir/cytogate.yaml``, else defaults."""
    import yaml

    path = config_path or (run_dir / CONFIG_NAME)
    if config_path is None and not path.is_file():
        return RunConfig()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise DesignError(f"{path}: cannot read run config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise DesignError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise DesignError(f"{path}: a run config is a YAML mapping")
    known = {f.name for f in fields(RunConfig)} - {"path"}
    unknown = sorted(set(doc) - known - {"design"})
    if unknown:
        raise DesignError(
            f"{path}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
        )
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "design":  # nested form: design: {source:, keywords:, pattern:}
            values.update(_design_section(value, path))
        elif key == "design_keywords":
            values[key] = tuple(dict(value).items())
        elif key == "comparisons":
            values[key] = _comparisons(value, path)
        elif isinstance(value, list):
            values[key] = tuple(str(v) for v in value)
        else:
            values[key] = value
    try:
        config = replace(RunConfig(), path=str(path), **values)
    except TypeError as exc:
        raise DesignError(f"{path}: {exc}") from exc
    _check_config(config, path)
    return config


def _design_section(value: Any, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DesignError(f"{path}: field 'design': a mapping with source/keywords/pattern")
    out: dict[str, Any] = {}
    if "source" in value:
        out["design_source"] = value["source"]
    if "keywords" in value:
        out["design_keywords"] = tuple(dict(value["keywords"]).items())
    if "pattern" in value:
        out["filename_pattern"] = str(value["pattern"])
    return out


def _comparisons(value: Any, path: Path) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in value or []:
        if isinstance(item, str) and " vs " in item:
            a, b = item.split(" vs ", 1)
            pairs.append((a.strip(), b.strip()))
        elif isinstance(item, list | tuple) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        else:
            raise DesignError(
                f"{path}: field 'comparisons': {item!r} is not 'T vs REF' or [T, REF]"
            )
    return tuple(pairs)


def _check_config(config: RunConfig, path: Path) -> None:
    def bad(fieldname: str, why: str) -> DesignError:
        return DesignError(f"{path}: field '{fieldname}': {why}")

    if config.baseline not in config.timepoints:
        raise bad("baseline", f"{config.baseline!r} is not one of timepoints {config.timepoints}")
    for a, b in config.comparisons or ():
        for tp in (a, b):
            if tp not in config.timepoints:
                raise bad("comparisons", f"{tp!r} is not one of timepoints {config.timepoints}")
    choices = {
        "mfi_statistic": ("mean", "median", "geomean"),
        "test": ("paired_t", "ratio_t", "wilcoxon"),
        "correction": ("none", "holm", "bh"),
        "design_source": ("auto", "manifest", "keywords", "filename"),
    }
    for fieldname, allowed in choices.items():
        if getattr(config, fieldname) not in allowed:
            raise bad(fieldname, f"{getattr(config, fieldname)!r} is not one of {allowed}")
    if not (isinstance(config.min_events, int) and config.min_events >= 1):
        raise bad("min_events", "a whole number >= 1")
    if not 0 < float(config.positivity_percentile) < 100:
        raise bad("positivity_percentile", "between 0 and 100")
    try:
        pattern = re.compile(config.filename_pattern)
    except re.error as exc:
        raise bad("filename_pattern", f"bad regular expression: {exc}") from exc
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


def read_manifest(path: Path, run_dir: Path, config: RunConfig) -> Design:
    """Parse ``manifest.csv``; all problems are reported together with their line numbers."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DesignError(f"{path}: cannot read manifest: {exc.strerror}") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
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
    for line, raw in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if not any(rec.values()):
            continue
        where = f"{path.name}: line {line}"
        row_problems = []
        for col in required:
            if not rec.get(col):
                row_problems.append(f"{where}: empty '{col}'")
        name = rec.get("file", "")
        if name and name in seen_files:
            row_problems.append(
                f"{where}: duplicate row for file {name} (first on line {seen_files[name]})"
            )
        file_path = run_dir / name
        if name and not file_path.is_file():
            row_problems.append(f"{where}: file {name} does not exist in {run_dir}")
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
        if row_problems:
            problems.extend(row_problems)
            continue
        seen_files[name] = line
        seen_samples[key] = line
        rows.append(
            DesignRow(
                file_path,
                key[0],
                tp,
                tube,
                numbers["wbc_per_ul"],
                numbers["beads_per_ul"],
                rec.get("cohort", ""),
                line,
            )
        )
    if problems:
        raise DesignError("manifest problems:\n  " + "\n  ".join(problems))
    if not rows:
        raise DesignError(f"{path}: the manifest lists no files")
    design = Design(rows, f"manifest {path.name}")
    listed = {r.file.name for r in rows}
    for extra in list_fcs_files(run_dir):
        if extra.name not in listed:
            design.warnings.append(
                f"{extra.name}: in the run folder but not in {path.name}; not processed"
            )
    return design


def _number(text: str, where: str) -> tuple[float | None, str | None]:
    if text == "":
        return None, None
    try:
        value = float(text)
    except ValueError:
        return None, f"{where}: {text!r} is not a number"
    if not math.isfinite(value) or value < 0:
        return None, f"{where}: {text!r} must be a finite number >= 0"
    return value, None


def _design_from_keywords(run_dir: Path, config: RunConfig, strict: bool) -> Design | None:
    """Design from FCS keywords (e.g. CYTOGATE_PATIENT); None if files lack them (not strict)."""
    from cytogate.errors import FCSError
    from cytogate.io.fcs import read_keywords

    names = dict(config.design_keywords)
    rows, problems = [], []
    for path in list_fcs_files(run_dir):
        try:
            kw = read_keywords(path)
        except FCSError as exc:
            problems.append(str(exc))
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
    return _checked(rows, problems, f"FCS keywords {', '.join(names.values())}", config)


def _kw_number(keywords: Mapping[str, str], key: str) -> float | None:
    value, problem = _number(keywords.get(key, "").strip(), key)
    return None if problem else value


def _design_from_filenames(run_dir: Path, config: RunConfig) -> Design:
    pattern = re.compile(config.filename_pattern)
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
