"""Regular expressions written by users (panels, scale rules, file-name patterns), made safe.

Python's ``re`` backtracks: ``^(a+)+$`` against 30 ``a`` and a ``b`` takes seconds and doubles
with each character, so one pattern in a template or run config could hang a 1,000-file run.
RE2 (``google-re2``) matches in time linear in the text, whatever the pattern; it has no
backreferences or look-around, which channel names and file names do not need. Without RE2
installed, patterns with a nested quantifier (the shape of every catastrophic case) are
refused instead. Either way a bad pattern is one :class:`~cytogate.errors.CytogateError` line
naming where it came from.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Protocol

from cytogate.errors import CytogateError

MAX_PATTERN_LEN = 1000

try:  # pragma: no branch
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 not installed
    _re2 = None

# a group holding a quantifier, itself quantified: (a+)+, (a*b?)*, (?:x+){2,}
_NESTED = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)\s*[*+{?]")


class UserRegex(Protocol):
    """What both engines' compiled patterns offer and cytogate uses."""

    pattern: str
    groupindex: Any

    def search(self, text: str) -> Any: ...


class RegexError(CytogateError):
    """A user's regular expression is invalid or unsafe. The message says where it is."""


def engine() -> str:
    """``"re2"`` (linear time) or ``"re"`` (nested quantifiers refused)."""
    return "re2" if _re2 is not None else "re"


@functools.lru_cache(maxsize=1024)
def compile_user_regex(pattern: str, where: str, ignorecase: bool = False) -> UserRegex:
    """Compile ``pattern`` with a linear-time engine; ``where`` names its file and field."""
    if not isinstance(pattern, str):
        raise RegexError(f"{where}: a regular expression is text, not {type(pattern).__name__}")
    if len(pattern) > MAX_PATTERN_LEN:
        raise RegexError(f"{where}: regular expression longer than {MAX_PATTERN_LEN} characters")
    try:
        re.compile(pattern)  # Python's syntax is the documented one; RE2 accepts a subset
    except re.error as exc:
        raise RegexError(f"{where}: bad regular expression {pattern!r}: {exc}") from exc
    if _re2 is not None:
        options = _re2.Options()
        options.log_errors = False
        options.case_sensitive = not ignorecase
        try:
            return _re2.compile(pattern, options)
        except _re2.error as exc:
            why = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise RegexError(
                f"{where}: regular expression {pattern!r} uses a feature without a linear-time "
                f"guarantee (backreference or look-around): {why}"
            ) from exc
    if _NESTED.search(pattern):  # pragma: no cover - only without google-re2
        raise RegexError(
            f"{where}: regular expression {pattern!r} has a nested quantifier such as (a+)+, "
            "which can take exponential time; rewrite it without one"
        )
    return re.compile(pattern, re.IGNORECASE if ignorecase else 0)  # pragma: no cover
