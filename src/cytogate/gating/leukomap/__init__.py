"""CD45/SSC leukocyte map: lymphocytes, monocytes, granulocytes, CD45dim blasts and
CD45-negative events as one partition of the plot, fitted from the density's modes."""

from cytogate.gating.leukomap.classify import NAMES, Rules
from cytogate.gating.leukomap.fit import (
    LeukoMap,
    MapSpec,
    codes_of,
    fit_map,
    population_outline,
)

__all__ = ["NAMES", "LeukoMap", "MapSpec", "Rules", "codes_of", "fit_map", "population_outline"]
