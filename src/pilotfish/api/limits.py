"""Limits on what one configuration file or request body may make the parser do.

Configuration arrives from places a hostile app may write to (a watched
directory, the REST API), so parsing must cost bounded memory and time
whatever the input. The costs that matter are bytes read, nodes built
(including those an alias makes the walker build again), nesting depth (the
walkers recurse), and documents. Every limit is enforced before anything is
built from the text: sizes before reading or parsing, the rest while YAML
events are composed into nodes (``api.yamlcompose``), so a billion-laughs
file is refused after a few thousand nodes instead of after gigabytes.

The defaults leave a wide margin above real manifests (the largest sample or
test file here is 64 KB, 4 000 nodes, 31 levels, 34 aliases) and keep the worst
accepted input to a few seconds of parsing and some tens of MB on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

__all__ = ["DEFAULT_LIMITS", "ParseLimits", "file_too_large"]

#: The walkers (``yamlnodes``, null dropping, error mapping) recurse once per
#: level; deeper limits would run into Python's recursion limit (1000 frames).
_DEPTH_CEILING = 400


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on one file (or one request body); each must be positive.

    ``max_file_bytes``: size of a configuration file, checked before it is
        read (4 MiB; a typical Istio resource is 1 KB).
    ``max_body_bytes``: size of a configuration API request body, which holds
        one object (1 MiB: aiohttp's default, which the API always had).
    ``max_nodes``: YAML/JSON nodes (mappings, sequences, scalars; keys count)
        in one file, counting every node an alias expands to (200 000: about
        3 MB of typical YAML, under 4 s of parsing).
    ``max_body_nodes``: the same for one request body (50 000; an Istio
        resource has tens to hundreds). The API parses on its event loop, so
        this bounds how long one request can hold it (about 1 s).
    ``max_depth``: nesting of mappings and sequences, also through aliases
        (100; Istio resources nest under 35 levels).
    ``max_documents``: YAML documents in one file, and separately the items of
        ``kind: List`` documents and top-level JSON arrays (10 000).
    ``max_aliases``: alias uses (``*name``) in one file (1 000).
    ``max_alias_nodes``: nodes that alias uses add in one file, i.e. how far
        aliases may expand the configuration beyond what is written (10 000).
    ``max_alias_chars``: characters of scalars that alias uses add in one
        file (1 MiB): a thousand aliases of one long string would otherwise
        be rendered, stored and sent a thousand times.
    """

    max_file_bytes: int = 4 * 1024 * 1024
    max_body_bytes: int = 1024 * 1024
    max_nodes: int = 200_000
    max_body_nodes: int = 50_000
    max_depth: int = 100
    max_documents: int = 10_000
    max_aliases: int = 1_000
    max_alias_nodes: int = 10_000
    max_alias_chars: int = 1024 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"ParseLimits.{f.name} must be a positive integer, not {value!r}")
        if self.max_depth > _DEPTH_CEILING:
            raise ValueError(f"ParseLimits.max_depth must be at most {_DEPTH_CEILING}")

    def for_body(self) -> ParseLimits:
        """The limits that parsing one request body applies: ``max_nodes`` is
        ``max_body_nodes`` (when smaller). The API checks ``max_body_bytes``
        itself while reading."""
        return replace(self, max_nodes=min(self.max_nodes, self.max_body_nodes))


#: The limits every entry point uses unless told otherwise.
DEFAULT_LIMITS = ParseLimits()


def file_too_large(max_bytes: int) -> str:
    """The error message for a file of more than ``max_bytes`` bytes."""
    return f"file is larger than {max_bytes} bytes (limit)"
