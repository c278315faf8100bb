"""Validation of a run config's YAML: only the documented fields, types and ranges.

A config is written by hand and read by a pipeline, so a wrong value must be one line naming
the file and the field, before any file is gated — not a traceback after 1,000 files, and not a
silent coercion (``timepoints: baseline, day3`` is a string, not two timepoints). pydantic v2
in strict mode does the type work; this module turns its errors into that one line and the
result into the values of :class:`~cytogate.study.design.RunConfig`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cytogate.errors import DesignError
from cytogate.study.design_rules import FIELDS, rules_from_section

#: FCS keywords naming a file's patient, timepoint and tube (RunConfig.design_keywords)
DEFAULT_DESIGN_KEYWORDS = {
    "patient": "CYTOGATE_PATIENT",
    "timepoint": "CYTOGATE_TIMEPOINT",
    "tube": "CYTOGATE_TUBE",
}
Name = Annotated[str, Field(min_length=1, max_length=200)]
Names = Annotated[list[Name], Field(max_length=1000)]


Pattern = Annotated[str, Field(min_length=1, max_length=1000)]


class _Rule(BaseModel):
    """Where one design field comes from (docs/designs.md): exactly one of keyword, filename,
    value; then an optional regex (group ``value``, else group 1, else the match) and map."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keyword: Name | None = None
    filename: Literal[True] | None = None
    value: Name | None = None
    regex: Pattern | None = None
    map: Annotated[dict[Name, Name], Field(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> _Rule:
        given = [k for k in ("keyword", "filename", "value") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rule takes exactly one of keyword, filename, value"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


#: a field's rules: one rule, a keyword name (shorthand), or alternatives tried in order
_Rules = Annotated[list[_Rule], Field(min_length=1, max_length=20)]


class _ControlRule(BaseModel):
    """A tube-name pattern making a tube a control: ``{pattern: "^(?P<control_for>.+) iso$",
    role: isotype}`` (named groups control_for and fmo_marker fill those fields)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    pattern: Pattern
    role: Literal["stained", "isotype", "fmo", "unstained"]


class _Design(BaseModel):
    """The ``design:`` section: how a run without a manifest is placed (docs/designs.md)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: Literal["auto", "manifest", "keywords", "filename", "rules"] | None = None
    keywords: dict[Literal["patient", "timepoint", "tube"], Name] | None = None
    pattern: Pattern | None = None
    preset: Literal["auto", "facsdiva", "kaluza", "spectroflo", "cytogate"] | None = None
    patient: _Rules | None = None
    timepoint: _Rules | None = None
    tube: _Rules | None = None
    role: _Rules | None = None
    control_for: _Rules | None = None
    fmo_marker: _Rules | None = None
    wbc_per_ul: _Rules | None = None
    cohort: _Rules | None = None
    controls: Annotated[list[_ControlRule], Field(max_length=100)] | None = None

    @field_validator(
        "patient",
        "timepoint",
        "tube",
        "role",
        "control_for",
        "fmo_marker",
        "wbc_per_ul",
        "cohort",
        mode="before",
    )
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        """``TUBE NAME`` -> ``[{keyword: TUBE NAME}]``; one rule -> a list of one."""
        items = value if isinstance(value, list) else [value]
        return [{"keyword": v} if isinstance(v, str) else v for v in items]


class ConfigFile(BaseModel):
    """The fields a ``cytogate.yaml`` may hold (defaults: :class:`RunConfig`'s)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    timepoints: Annotated[list[Name], Field(min_length=1, max_length=1000)] | None = None
    baseline: Name | None = None
    comparisons: Annotated[list[Any], Field(max_length=10_000)] | None = None
    template: Name | None = None
    mfi_statistic: Literal["mean", "median", "geomean"] | None = None
    test: Literal["paired_t", "ratio_t", "wilcoxon"] | None = None
    correction: Literal["none", "holm", "bh"] | None = None
    min_events: Annotated[int, Field(ge=1, le=10**9)] | None = None
    positivity_percentile: Annotated[float, Field(gt=0, lt=100)] | None = None
    control_tube: Name | None = None
    #: per-marker control kind and stained tube of a multi-tube panel (docs/multitube.md)
    marker_controls: (
        Annotated[dict[Name, Literal["isotype", "fmo", "unstained"]], Field(max_length=1000)] | None
    ) = None
    marker_tubes: Annotated[dict[Name, Name], Field(max_length=1000)] | None = None
    rmfi_markers: Names | None = None
    positivity_markers: Names | None = None
    marker_populations: Names | None = None
    count_populations: Names | None = None
    design_source: Literal["auto", "manifest", "keywords", "filename"] | None = None
    design_keywords: dict[Literal["patient", "timepoint", "tube"], Name] | None = None
    filename_pattern: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    file_time_limit_s: Annotated[float, Field(gt=0, le=86_400)] | None = None
    design: _Design | None = None

    @field_validator(
        "timepoints",
        "rmfi_markers",
        "positivity_markers",
        "count_populations",
        "marker_populations",
    )
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            seen: set[str] = set()
            for item in value:
                if item in seen:
                    raise ValueError(f"{item!r} is listed twice")
                seen.add(item)
        return value


def _comparisons(value: list[Any]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in value:
        if isinstance(item, str) and " vs " in item:
            a, b = item.split(" vs ", 1)
            pairs.append((a.strip(), b.strip()))
        elif isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
            pairs.append((item[0], item[1]))
        else:
            raise ValueError(f"{item!r} is not 'T vs REF' or [T, REF]")
    return tuple(pairs)


def _one_line(exc: ValidationError, where: str) -> DesignError:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model: type[BaseModel] = ConfigFile
            if err["loc"][0] == "design" and len(err["loc"]) > 1:
                model = _Design if len(err["loc"]) == 2 else (
                    _ControlRule if err["loc"][1] == "controls" else _Rule
                )  # fmt: skip
            allowed = ", ".join(sorted(model.model_fields))
            parts.append(f"field '{loc}': unknown field (allowed: {allowed})")
            continue
        given = repr(err.get("input"))
        parts.append(f"field '{loc}': {msg} (got {given[:60]})")
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return DesignError(f"{where}: " + "; ".join(parts) + more)


def validate_config(doc: dict[Any, Any], where: str) -> dict[str, Any]:
    """The ``RunConfig`` field values ``doc`` sets; :class:`DesignError` naming the field."""
    bad_keys = [k for k in doc if not isinstance(k, str)]
    if bad_keys:
        raise DesignError(f"{where}: field names are text, not {bad_keys[0]!r}")
    unknown = sorted(set(doc) - set(ConfigFile.model_fields))
    if unknown:
        allowed = ", ".join(sorted(set(ConfigFile.model_fields) - {"design"}))
        raise DesignError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {allowed})")
    try:
        model = ConfigFile.model_validate(doc)
    except ValidationError as exc:
        raise _one_line(exc, where) from None
    values: dict[str, Any] = {}
    for key in model.model_fields_set - {"design"}:
        value = getattr(model, key)
        if value is None:
            continue
        if key == "comparisons":
            try:
                values[key] = _comparisons(value)
            except ValueError as exc:
                raise DesignError(f"{where}: field 'comparisons': {exc}") from None
        elif key in ("design_keywords", "marker_controls", "marker_tubes"):
            values[key] = tuple(value.items())
        elif isinstance(value, list):
            values[key] = tuple(value)
        else:
            values[key] = value
    if model.design is not None:  # nested form: design: {source:, keywords:, pattern:}
        if model.design.source is not None:
            values["design_source"] = model.design.source
        if model.design.keywords is not None:
            values["design_keywords"] = tuple(model.design.keywords.items())
        if model.design.pattern is not None:
            values["filename_pattern"] = model.design.pattern
        rules = model.design.model_dump(exclude_none=True, include={*FIELDS, "preset", "controls"})
        if rules:
            values["design_rules"] = rules_from_section(rules, where)
    if "design_keywords" in values:  # a partial mapping keeps the other roles' defaults
        merged = dict(DEFAULT_DESIGN_KEYWORDS)
        merged.update(dict(values["design_keywords"]))
        values["design_keywords"] = tuple(merged.items())
    return values
