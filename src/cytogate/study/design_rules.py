"""Design inference rules: which FCS keyword or file-name part says patient, timepoint and tube.

Why: acquisition software writes the design into every file, each in its own keywords (BD
FACSDiva: specimen ``$SRC``, ``TUBE NAME``, ``EXPERIMENT NAME``; Beckman CXP/Navios/Kaluza:
``@SAMPLEID1``-``4``, ``TESTNAME``; Cytek SpectroFlo: ``GROUPNAME``, ``TUBENAME``), and labs add
their own naming scheme on top. A run without a manifest is placed by rules: per field a
keyword, the file name or a constant, optionally a regular expression (RE2 through
:mod:`cytogate.userregex`, so a rule cannot hang a run) and a value map. A tube's role and the
stained tube a control belongs to follow from its name (``CXCR4 isotype`` -> isotype of
``CXCR4``). Every value records where it came from, so ``cytogate design`` can show it.

This module is the rule engine alone (config section -> :class:`DesignRules`, one file's
keywords -> :class:`FileDesign`); :mod:`cytogate.study.design` walks the run folder with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cytogate.errors import CytogateError, DesignError
from cytogate.userregex import compile_user_regex

#: Fields a rule can fill; the first three are required to place a file.
FIELDS: tuple[str, ...] = (
    "patient",
    "timepoint",
    "tube",
    "role",
    "control_for",
    "fmo_marker",
    "wbc_per_ul",
    "cohort",
)
REQUIRED: tuple[str, ...] = ("patient", "timepoint", "tube")
ROLES: tuple[str, ...] = ("stained", "isotype", "fmo", "unstained")

#: A timepoint as labs type it into specimen, experiment or file names: BL, baseline, pre,
#: D3, Day 3, 2h, 24 h, 6hrs ... (between separators or at either end).
_TOKEN = r"BL|baseline|pre|D\d+|day ?\d+|\d+ ?h(?:rs?|ours?)?"
TIMEPOINT_TOKEN = rf"(?i)(?:^|[ _.-])(?P<value>{_TOKEN})(?:$|[ _.-])"
#: A specimen or group name up to an optional trailing timepoint token: ``P03_D3`` -> ``P03``.
PATIENT_BEFORE_TIMEPOINT = rf"(?i)^(?P<value>.+?)(?:[ _-]+(?:{_TOKEN}))?$"

#: Default tube-name rules: role and the stained tube a control belongs to.
DEFAULT_CONTROLS: tuple[dict[str, str], ...] = (
    {"pattern": r"(?i)^(?:isotype|iso)$", "role": "isotype"},
    {"pattern": r"(?i)^(?P<control_for>.+?)[ _-]+(?:isotype|iso)(?: control)?$", "role": "isotype"},
    {"pattern": r"(?i)^(?:isotype|iso)[ _-]+(?P<control_for>.+)$", "role": "isotype"},
    {"pattern": r"(?i)^(?P<control_for>.+?)[ _-]+FMO[ _-]+(?P<fmo_marker>.+)$", "role": "fmo"},
    {"pattern": r"(?i)^FMO(?:[ _-]+(?P<fmo_marker>.+))?$", "role": "fmo"},
    {"pattern": r"(?i)^(?P<control_for>.+?)[ _-]+unstained$", "role": "unstained"},
    {"pattern": r"(?i)^(?:unstained|unstain|blank)$", "role": "unstained"},
)

_SPECIMEN_TIMEPOINT = {"regex": TIMEPOINT_TOKEN}
#: Built-in presets, in the config's own form. Keyword names are those of real exports in the
#: FCS corpus (FACSDiva 6.2 on Fortessa/LSR II/Canto, FC 500 CXP, SpectroFlo 2.2). No preset
#: reads the timepoint from the file name: plate exports name wells like ``D6``, which would
#: read as day 6 (a real LSR II HTS file does); a lab whose file names carry it says so.
PRESETS: dict[str, dict[str, Any]] = {
    "facsdiva": {
        "patient": {"keyword": "$SRC", "regex": PATIENT_BEFORE_TIMEPOINT},
        "timepoint": [
            {"keyword": "$SRC", **_SPECIMEN_TIMEPOINT},
            {"keyword": "EXPERIMENT NAME", **_SPECIMEN_TIMEPOINT},
        ],
        "tube": {"keyword": "TUBE NAME"},
    },
    "kaluza": {  # Beckman Coulter CXP (FC 500), Navios and Kaluza exports
        "patient": [
            {"keyword": "@SAMPLEID1", "regex": PATIENT_BEFORE_TIMEPOINT},
            {"keyword": "$SRC", "regex": PATIENT_BEFORE_TIMEPOINT},
        ],
        "timepoint": [
            {"keyword": "@SAMPLEID2", **_SPECIMEN_TIMEPOINT},
            {"keyword": "@SAMPLEID1", **_SPECIMEN_TIMEPOINT},
            {"keyword": "$SRC", **_SPECIMEN_TIMEPOINT},
        ],
        "tube": [{"keyword": "TESTNAME"}, {"keyword": "@PANEL"}],
    },
    "spectroflo": {
        "patient": {"keyword": "GROUPNAME", "regex": PATIENT_BEFORE_TIMEPOINT},
        "timepoint": [
            {"keyword": "GROUPNAME", **_SPECIMEN_TIMEPOINT},
        ],
        "tube": {"keyword": "TUBENAME"},
    },
    "cytogate": {
        "patient": {"keyword": "CYTOGATE_PATIENT"},
        "timepoint": {"keyword": "CYTOGATE_TIMEPOINT"},
        "tube": {"keyword": "CYTOGATE_TUBE"},
    },
}
PRESET_NAMES: tuple[str, ...] = (*PRESETS, "auto")


def detect_preset(keywords: Mapping[str, str]) -> str | None:
    """The acquisition software that wrote a file, from its keywords (None: not known)."""
    creator = keywords.get("CREATOR", "")
    cyt = keywords.get("$CYT", "")
    if "CYTOGATE_PATIENT" in keywords and "CYTOGATE_TUBE" in keywords:
        return "cytogate"
    if "FACSDiva" in creator or ("TUBE NAME" in keywords and "EXPERIMENT NAME" in keywords):
        return "facsdiva"
    if "SpectroFlo" in creator or "TUBENAME" in keywords:
        return "spectroflo"
    if (
        "Kaluza" in creator
        or keywords.get("$SYS", "").strip() == "CXP"
        or any(name in cyt for name in ("Navios", "Cytomics", "Gallios", "CytoFLEX", "DxFLEX"))
        or "@SAMPLEID1" in keywords
    ):
        return "kaluza"
    return None


@dataclass(frozen=True)
class FieldRule:
    """Where one field's value comes from: a keyword, the file name or a constant."""

    keyword: str = ""  # upper-cased FCS keyword name ("" = not a keyword rule)
    filename: bool = False
    value: str = ""
    regex: str = ""
    map: tuple[tuple[str, str], ...] = ()
    where: str = ""  # config file and field, for messages

    def describe(self) -> str:
        what = (
            f"keyword {self.keyword}" if self.keyword else "file name" if self.filename else "value"
        )
        return what + (" regex" if self.regex else "")


@dataclass(frozen=True)
class ControlRule:
    """A tube-name pattern that makes a tube a control (named groups control_for, fmo_marker)."""

    pattern: str
    role: str
    where: str = ""


@dataclass(frozen=True)
class DesignRules:
    """The rules of a run: per field its alternatives (first that gives a value wins)."""

    fields: tuple[tuple[str, tuple[FieldRule, ...]], ...] = ()
    controls: tuple[ControlRule, ...] = ()
    preset: str = "auto"  # the preset under the config's own rules ("" = none)
    where: str = ""

    def for_preset(self, preset: str | None) -> DesignRules:
        """These rules over ``preset``'s (the config's own rules win field by field)."""
        if not preset:
            return self
        own = dict(self.fields)
        base = dict(_parse_fields(PRESETS[preset], f"preset {preset}"))
        merged = {**base, **own}
        return DesignRules(tuple(merged.items()), self.controls, preset, self.where)


@dataclass(frozen=True)
class FileDesign:
    """One file's inferred fields, where each came from, and why a required one is missing."""

    values: dict[str, str]
    sources: dict[str, str]
    problems: tuple[str, ...]


# ---------------------------------------------------------------------------- parsing


def rules_from_section(section: Mapping[str, Any], where: str) -> DesignRules:
    """A validated ``design:`` section (plain data) -> :class:`DesignRules`; regexes compiled.

    Raises :class:`DesignError` naming ``where`` and the field for a bad regular expression.
    """
    fields = _parse_fields({k: section[k] for k in FIELDS if section.get(k) is not None}, where)
    raw_controls = section.get("controls")
    controls = tuple(
        ControlRule(c["pattern"], c["role"], f"{where}: field 'design.controls[{i}].pattern'")
        for i, c in enumerate(DEFAULT_CONTROLS if raw_controls is None else raw_controls)
    )
    for rule in controls:
        _compile(rule.pattern, rule.where)
    preset = section.get("preset") or "auto"
    return DesignRules(fields, controls, preset, where)


def default_rules(where: str = "built-in rules") -> DesignRules:
    """No rules of the config's own: the preset each file's software calls for."""
    return rules_from_section({}, where)


def _parse_fields(
    spec: Mapping[str, Any], where: str
) -> tuple[tuple[str, tuple[FieldRule, ...]], ...]:
    out = []
    for name, value in spec.items():
        items = value if isinstance(value, list) else [value]
        rules = []
        for i, item in enumerate(items):
            here = f"{where}: field 'design.{name}" + (f"[{i}]" if isinstance(value, list) else "")
            if isinstance(item, str):
                item = {"keyword": item}
            rule = FieldRule(
                keyword=str(item.get("keyword") or "").upper(),
                filename=bool(item.get("filename")),
                value=str(item.get("value") or ""),
                regex=str(item.get("regex") or ""),
                map=tuple((str(k), str(v)) for k, v in (item.get("map") or {}).items()),
                where=here + "'",
            )
            if rule.regex:
                _compile(rule.regex, here + ".regex'")
            rules.append(rule)
        out.append((name, tuple(rules)))
    return tuple(out)


def _compile(pattern: str, where: str) -> Any:
    try:
        return compile_user_regex(pattern, where)
    except CytogateError as exc:
        raise DesignError(str(exc)) from None


# ---------------------------------------------------------------------------- evaluation


def evaluate(
    rules: DesignRules,
    keywords: Mapping[str, str],
    file_name: str,
    timepoints: Sequence[str],
) -> FileDesign:
    """Apply ``rules`` to one file's keywords and name.

    Per field the first alternative that yields a value wins; timepoints not among
    ``timepoints`` are normalised (``D3`` -> ``day3``, ``BL`` -> ``baseline``, ``24 h`` ->
    ``24h``) when that gives a known one. Role, control_for and fmo_marker follow from the tube
    name by the control rules unless a field rule sets them.
    """
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    tried: dict[str, list[str]] = {}
    for name, alternatives in rules.fields:
        for rule in alternatives:
            got, source, why = _apply(rule, keywords, file_name)
            if got is None:
                tried.setdefault(name, []).append(why)
                continue
            if name == "timepoint":
                got, note = _timepoint(got, timepoints)
                source += note
            values[name], sources[name] = got, source
            break
    for name in REQUIRED:
        if name not in values:
            attempts = "; ".join(tried.get(name, [])) or "no rule for it"
            problems.append(f"no {name} ({attempts})")
    if "timepoint" in values and values["timepoint"] not in timepoints:
        problems.append(
            f"timepoint {values['timepoint']!r} ({sources['timepoint']}) is not one of "
            f"{', '.join(timepoints)}"
        )
    if "role" in values and values["role"] not in ROLES:
        problems.append(
            f"role {values['role']!r} ({sources['role']}) is not one of {', '.join(ROLES)}"
        )
    if "tube" in values and "role" not in values:
        _roles_from_tube(rules.controls, values, sources)
    values.setdefault("control_for", "")
    values.setdefault("fmo_marker", "")
    return FileDesign(values, sources, tuple(problems))


def _apply(
    rule: FieldRule, keywords: Mapping[str, str], file_name: str
) -> tuple[str | None, str, str]:
    """(value or None, its source, why not)."""
    if rule.keyword:
        text = keywords.get(rule.keyword, "").strip()
        if not text:
            return None, "", f"keyword {rule.keyword} absent or empty"
        source, shown = f"keyword {rule.keyword}", f"keyword {rule.keyword} {text!r}"
    elif rule.filename:
        text, source, shown = file_name, "file name", f"file name {file_name!r}"
    else:
        text, source, shown = rule.value, "value", "value"
    if rule.regex:
        match = _compile(rule.regex, rule.where).search(text)
        if not match:
            return None, "", f"{shown} does not match {rule.regex!r}"
        groups = match.groupdict() if hasattr(match, "groupdict") else {}
        if groups.get("value") is not None:
            text = groups["value"]
        elif match.re.groups if hasattr(match, "re") else False:
            text = match.group(1) or ""
        else:
            text = match.group(0)
        text = text.strip()
        source += " regex"
        if not text:
            return None, "", f"{shown}: the regex matched an empty value"
    if rule.map:
        table = dict(rule.map)
        folded = {k.casefold(): v for k, v in rule.map}
        mapped = table.get(text, folded.get(text.casefold()))
        if mapped is not None:
            source += f", map {text}→{mapped}"
            text = mapped
    return text, source, ""


def _timepoint(value: str, timepoints: Sequence[str]) -> tuple[str, str]:
    """A timepoint as a lab typed it -> the config's spelling, and a note saying so."""
    if value in timepoints:
        return value, ""
    folded = {t.casefold(): t for t in timepoints}
    squeezed = value.casefold().replace(" ", "")
    candidates = [squeezed]
    if squeezed in ("bl", "base", "pre", "d0", "day0"):
        candidates.append("baseline")
    if squeezed.startswith("d") and squeezed[1:].isdigit():
        candidates.append(f"day{int(squeezed[1:])}")
    hours = re.fullmatch(r"(\d+)(?:h|hr|hrs|hour|hours)", squeezed)
    if hours:
        candidates.append(f"{int(hours[1])}h")
    for cand in candidates:
        if cand in folded:
            return folded[cand], f", normalised {value}→{folded[cand]}"
    return value, ""


def _roles_from_tube(
    controls: Sequence[ControlRule], values: dict[str, str], sources: dict[str, str]
) -> None:
    tube = values["tube"]
    for rule in controls:
        match = _compile(rule.pattern, rule.where).search(tube)
        if not match:
            continue
        groups = match.groupdict() if hasattr(match, "groupdict") else {}
        values["role"] = rule.role
        sources["role"] = f"tube name rule {rule.pattern!r}"
        for name in ("control_for", "fmo_marker"):
            if name not in values and groups.get(name):
                values[name] = groups[name].strip()
                sources[name] = "tube name"
        return
    values["role"] = "stained"
    sources["role"] = "tube name (no control rule matched)"
