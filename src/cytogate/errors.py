"""Exception types.

Every error a user can cause (a bad file, a bad template, a bad manifest) is a subclass of
:class:`CytogateError`, so pipelines can catch one type and the CLI can print one clear line
and exit 2 instead of a traceback.
"""

from __future__ import annotations


class CytogateError(Exception):
    """Base class of every error cytogate raises for bad input or configuration."""


class FCSError(CytogateError):
    """An FCS file cannot be read. The message names the file and the cause."""


class PanelError(CytogateError):
    """A marker named by a template resolves to no channel, or to several."""


class TemplateError(CytogateError):
    """A gating template is invalid. The message names the template file, the gate and the field."""


class GatingError(CytogateError):
    """A template cannot be applied to a sample (e.g. a gate's dimension is missing)."""


class DesignError(CytogateError):
    """The experimental design (manifest or run config) is inconsistent."""
