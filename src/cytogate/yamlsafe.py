"""YAML from users (run configs, templates), loaded safely and bounded.

``yaml.safe_load`` builds no arbitrary objects, but an "alias bomb" (nine anchors each listing
the previous one nine times) is a few hundred bytes that expand to 10⁹ items as soon as
anything walks the result (validation, ``json.dumps`` into run.json). So the text's size, the
number of aliases and — the real bound, since a few dozen aliases already nest exponentially —
the number of nodes the document has once every alias is expanded (counted on the node graph
with memoisation, before anything is built) are bounded; over a bound is one error line.
"""

from __future__ import annotations

from typing import Any

import yaml

from cytogate.errors import CytogateError

MAX_ALIASES = 1000
MAX_NODES = 1_000_000  # after expanding aliases; a large template has a few thousand
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


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, without expanding (memoised, iterative)."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        if not children_done:
            if id(node) in entered:
                raise YAMLError("an alias refers to a value that contains it (recursive YAML)")
            entered.add(id(node))
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if children_done or not kids:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(k), 0) for k in kids))
            continue
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def load_yaml(text: str, where: str) -> Any:
    """Parse one YAML document; :class:`YAMLError` naming ``where`` if invalid or too big."""
    if len(text) > MAX_BYTES:
        raise YAMLError(f"{where}: larger than {MAX_BYTES:,} bytes; not a config or template")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size > MAX_NODES:
            raise YAMLError(
                f"aliases expand to more than {MAX_NODES:,} values (an alias bomb?); write the "
                "values out"
            )
        return loader.construct_document(node)
    except YAMLError as exc:
        raise YAMLError(f"{where}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise YAMLError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise YAMLError(f"{where}: YAML nested too deeply") from exc
    finally:
        loader.dispose()
