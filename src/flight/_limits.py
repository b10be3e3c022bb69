"""Bounds on what Flight parses: config files (size, YAML aliases) and request bodies (size,
JSON nesting). Each is refused with a clear error before it can cost memory or a 500."""

from __future__ import annotations

import json
from typing import Any

import yaml

__all__ = [
    "MAX_ALIASES",
    "MAX_CONFIG_BYTES",
    "TooDeep",
    "TooManyAliases",
    "load_json",
    "load_yaml",
]

#: a pipeline config is a few kB; a file above this is refused before it is parsed
MAX_CONFIG_BYTES = 1 << 20
#: YAML aliases (``*name``) in one document: enough for any config, too few for an alias bomb
MAX_ALIASES = 100


class TooManyAliases(ValueError):
    """A YAML document uses more aliases than :data:`MAX_ALIASES` (an alias bomb)."""


class TooDeep(ValueError):
    """A JSON document nests deeper than the parser can take."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents with more than :data:`MAX_ALIASES` aliases."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise TooManyAliases(
                    f"more than {MAX_ALIASES} YAML aliases (*name): a config does not need "
                    f"them, and many expand into a huge document; write the values out"
                )
        return super().compose_node(parent, index)


#: values a YAML document may expand to (aliases counted as copies): an alias bomb of a few
#: dozen aliases expands to hundreds of millions
MAX_EXPANDED = 200_000


def _expanded(node: yaml.Node, memo: dict[int, int]) -> int:
    found = memo.get(id(node))
    if found is not None:
        return found
    memo[id(node)] = 1  # a recursive alias counts once, no endless loop
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded(k, memo) + _expanded(v, memo) for k, v in node.value)
    memo[id(node)] = total
    return total


def load_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load`` with at most :data:`MAX_ALIASES` aliases, and refusing a document
    whose aliases would expand it beyond :data:`MAX_EXPANDED` values."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded(node, {}) > MAX_EXPANDED:
            raise TooManyAliases(
                f"its YAML aliases (*name) expand to more than {MAX_EXPANDED} values (an alias "
                f"bomb); write the values out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_json(text: str | bytes) -> Any:
    """``json.loads``, with nesting too deep for the parser as :class:`TooDeep`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise TooDeep("the JSON is nested too deeply; send a flat object") from None
