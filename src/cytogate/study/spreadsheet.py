"""CSV cells a spreadsheet would run as a formula are neutralised on export.

Patient, cohort and file names come from users' manifests and FCS keywords; a text cell that
begins with ``=``, ``+``, ``-`` or ``@`` (or a tab / carriage return, which some spreadsheets
strip before looking) is a formula when the CSV is opened in Excel or LibreOffice (OWASP "CSV
injection"). Such cells get a leading ``'``, the spreadsheets' own "this is text" mark. Numbers,
including negative ones and text that reads as a number (``-1.5``), are left as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FORMULA_START = r"^[=+\-@\t\r]"


def neutralise_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every formula-like text cell prefixed by ``'`` (a copy if any changed)."""
    import pandas as pd

    out = table
    for column in table.columns:
        values = table[column]
        if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
            continue
        text = values.where(values.map(lambda v: isinstance(v, str)).astype(bool))
        starts = text.str.match(FORMULA_START, na=False).to_numpy(dtype=bool)
        if not starts.any():
            continue
        # numbers are parsed among those cells only (parsing every cell was most of a write)
        flags = starts.copy()
        flags[starts] = pd.to_numeric(text[starts], errors="coerce").isna().to_numpy()
        risky = pd.Series(flags, index=values.index)
        if risky.any():
            if out is table:
                out = table.copy()
            out[column] = values.where(~risky, "'" + text)
    return out
