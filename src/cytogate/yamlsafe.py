"""YAML from users (run configs, templates), loaded safely and bounded.

``yaml.safe_load`` builds no arbitrary objects, but an "alias bomb" (nine anchors each listing
the previous one nine times) is a few hundred bytes that expand to 10⁹ items as soon as
anything walks the result (validation, ``json.dumps`` into run.json). Configs and templates
need few aliases or none, so the count of aliases and the size of the text are bounded and
going over is one clear error line instead of exhausted memory.
"""

from __future__ import annotations

from typing import Any

import yaml

from cytogate.errors import CytogateError

MAX_ALIASES = 100
MAX_BYTES = 2_000_000


class YAMLError(CytogateError):
    """A YAML document is malformed or over the bounds; the message names the file."""


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise YAMLError(
                    f"line {mark.line + 1}: more than {MAX_ALIASES} YAML aliases (*name); "
                    "write the values out"
                )
        return super().compose_node(parent, index)


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document; :class:`YAMLError` naming ``where`` if invalid or too big."""
    if len(text) > MAX_BYTES:
        raise YAMLError(f"{where}: larger than {MAX_BYTES:,} bytes; not a config or template")
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except YAMLError as exc:
        raise YAMLError(f"{where}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise YAMLError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise YAMLError(f"{where}: YAML nested too deeply") from exc
    finally:
        loader.dispose()
