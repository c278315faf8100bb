"""YAML from users (run configs, templates), loaded safely and bounded.

``yaml.safe_load`` builds no arbitrary objects, but an "alias bomb" (nine anchors each listing
the previous one nine times) is a few hundred bytes that expand to 10⁹ items as soon as
anything walks the result (validation, ``json.dumps`` into run.json). Counting aliases is no
bound (a few dozen already nest exponentially), so the text's size and the number of values the
document has once every alias is expanded (counted on the node graph with memoisation, before
anything is built) are bounded; over a bound is one error line.
"""

from __future__ import annotations

from typing import Any

import yaml

from cytogate.errors import CytogateError

MAX_NODES = 1_000_000  # after expanding aliases; a large template has a few thousand
MAX_BYTES = 2_000_000


class YAMLError(CytogateError):
    """A YAML document is malformed or over the bounds; the message names the file."""


def _expanded_size(root: yaml.Node, where: str) -> int:
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
                raise YAMLError(f"{where}: an alias refers to a value that contains it")
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


def load_yaml(
    text: str | bytes, where: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader
) -> Any:
    """Parse one YAML document with ``loader`` (a SafeLoader subclass); bounded, see above.

    Raises :class:`YAMLError` naming ``where`` if it is invalid or over a bound.
    """
    if len(text) > MAX_BYTES:
        raise YAMLError(f"{where}: larger than {MAX_BYTES:,} bytes; not a config or template")
    parser = loader(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, where) > MAX_NODES:
            raise YAMLError(
                f"{where}: aliases expand to more than {MAX_NODES:,} values (an alias bomb?); "
                "write the values out"
            )
        return parser.construct_document(node)
    except YAMLError:
        raise
    except yaml.YAMLError as exc:
        raise YAMLError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from exc
    except RecursionError as exc:
        raise YAMLError(f"{where}: YAML nested too deeply") from exc
    finally:
        parser.dispose()
