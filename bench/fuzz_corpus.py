"""Mutated and hostile configuration documents, generated deterministically.

Theory of operation: seeds are the resources that load cleanly from the
repository's samples and test data (``load_seeds``). ``generate`` makes case
``i`` from its own ``random.Random(f"{seed}:{i}")``, so any case can be
rebuilt from its index alone. A case picks a seed document and one mutation
(``MUTATIONS``): structural ones edit the document as data and serialize it
(YAML or JSON); values that plain data cannot carry (YAML tags, aliases,
nesting deeper than the serializers recurse, 5000-digit numbers) go in as a
placeholder string that is then replaced in the text; byte-level ones edit
the serialized bytes (truncation, bad UTF-8, flips).

Named hostile texts (``ALIAS_BOMB``, ``BILLION_LAUGHS``, ``deep_*``) are also
used directly by the unit tests of each limit.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.api.limits import DEFAULT_LIMITS
from pilotfish.api.loader import load_file

__all__ = [
    "ALIAS_BOMB",
    "BILLION_LAUGHS",
    "MUTATIONS",
    "FuzzCase",
    "Seed",
    "deep_json",
    "deep_yaml_block",
    "deep_yaml_flow",
    "generate",
    "load_seeds",
    "many_documents",
]

_REPO = Path(__file__).resolve().parent.parent
_SEED_ROOTS = ("samples", "tests/testdata")
#: JWKS URIs of seeds point here: the control plane fetches them, and nothing may
#: leave loopback (port 9 refuses at once).
LOOPBACK_JWKS = "http://127.0.0.1:9/jwks.json"
_PLACEHOLDER = "__pilotfish_fuzz_placeholder__"

#: Nine levels of nine aliases: 387 million nodes once expanded (12 lines).
ALIAS_BOMB = (
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    + "".join(
        f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
        for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "metadata: {name: bomb}\n"
)

#: The classic: ten levels of ten references, a billion "lol"s.
BILLION_LAUGHS = 'lol: &lol "lol"\n' + "".join(
    f"lol{i}: &lol{i} [{', '.join([f'*lol{i - 1}' if i > 1 else '*lol'] * 10)}]\n"
    for i in range(1, 11)
)


def deep_yaml_flow(levels: int) -> str:
    """``spec: {a: {a: ... 1}}`` nested ``levels`` deep, on one line."""
    return "spec: " + "{a: " * levels + "1" + "}" * levels + "\n"


def deep_yaml_block(levels: int) -> str:
    """A block sequence nested ``levels`` deep, one level per line."""
    return "".join(" " * i + "-\n" for i in range(levels))


def deep_json(levels: int) -> str:
    """``{"spec": [[[...]]]}`` nested ``levels`` deep."""
    return '{"spec": ' + "[" * levels + "]" * levels + "}"


def many_documents(count: int) -> str:
    """``count`` small, valid Service documents."""
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}}}\n"
        f"spec: {{ports: [{{port: 80}}]}}\n"
        for i in range(count)
    )


@dataclass(frozen=True, slots=True)
class Seed:
    """A resource document that loads cleanly, and where it came from."""

    source: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))


@dataclass(frozen=True, slots=True)
class FuzzCase:
    """One generated input: ``body`` is what a file or a request holds."""

    index: int
    mutation: str
    seed: Seed
    body: bytes
    as_json: bool

    @property
    def suffix(self) -> str:
        return ".json" if self.as_json else ".yaml"


def load_seeds(repo: Path = _REPO) -> list[Seed]:
    """Every resource that loads cleanly from ``samples/`` and ``tests/testdata/``."""
    seeds: list[Seed] = []
    for root in _SEED_ROOTS:
        for path in sorted((repo / root).rglob("*")):
            if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
                continue
            if "out" in path.relative_to(repo).parts:
                continue  # golden outputs: IR and Envoy dumps, never mesh resources
            for resource in load_file(path).resources:
                doc = _loopback_jwks(copy.deepcopy(dict(resource.raw)))
                seeds.append(Seed(str(path.relative_to(repo)), doc))
    return seeds


def _loopback_jwks(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: LOOPBACK_JWKS if k == "jwksUri" else _loopback_jwks(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_loopback_jwks(v) for v in data]
    return data


def generate(seeds: list[Seed], count: int, seed: int = 0) -> Iterator[FuzzCase]:
    """``count`` cases; case ``i`` depends only on ``seeds``, ``seed`` and ``i``."""
    names = [name for name, _, _ in MUTATIONS]
    weights = [weight for _, weight, _ in MUTATIONS]
    makers = {name: make for name, _, make in MUTATIONS}
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        base = rng.choice(seeds)
        mutation = rng.choices(names, weights)[0]
        as_json = rng.random() < 0.3 and mutation not in _YAML_ONLY
        body = makers[mutation](rng, copy.deepcopy(base.doc), as_json)
        yield FuzzCase(index, mutation, base, body, as_json)


# -- serializing --------------------------------------------------------------------


#: libyaml's emitter when present: generating is then not the slow part of a run.
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(doc: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(doc, indent=2, ensure_ascii=False)
    text: str = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    return text


def _with_placeholder(rng: random.Random, doc: Any, as_json: bool, text: str) -> bytes:
    """``doc`` with a random value replaced by the literal ``text``."""
    _replace_random(rng, doc, _PLACEHOLDER)
    dumped = _dump(doc, as_json)
    for quoted in (json.dumps(_PLACEHOLDER), f"'{_PLACEHOLDER}'", _PLACEHOLDER):
        if quoted in dumped:
            return dumped.replace(quoted, text, 1).encode("utf-8")
    return dumped.encode("utf-8")  # the document had no value to replace


# -- picking places in a document -----------------------------------------------------


def _containers(data: Any) -> list[dict[str, Any] | list[Any]]:
    """Every mapping and list in ``data``, outermost first."""
    found: list[dict[str, Any] | list[Any]] = []
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            found.append(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            found.append(item)
            todo.extend(item)
    return found


def _replace_random(rng: random.Random, doc: Any, value: Any) -> None:
    """Set one random entry (key of a mapping or item of a list) to ``value``."""
    places = [c for c in _containers(doc) if c]
    if not places:
        return
    where = rng.choice(places)
    if isinstance(where, dict):
        where[rng.choice(list(where))] = value
    else:
        where[rng.randrange(len(where))] = value


# -- structural mutations ---------------------------------------------------------------


def _unchanged(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    return _dump(doc, as_json).encode("utf-8")


def _delete_field(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    mappings = [c for c in _containers(doc) if isinstance(c, dict) and c]
    for _ in range(rng.choice((1, 1, 2, 3))):
        if mappings:
            where = rng.choice(mappings)
            if where:
                del where[rng.choice(list(where))]
    return _dump(doc, as_json).encode("utf-8")


_SWAPS: tuple[Any, ...] = (
    0, -1, 1, 65536, 2**31, 2**63, 2**64 + 1, -(2**70), 3.5, -0.0, 1e308,
    True, False, None, "", "x", "80", "1.5s", "-1s", "*", "0.0.0.0/0", " ",
    "\u00e9\u4e2d\U0001f600", "\x7f", [], {}, ["a"], [1, 2], {"a": 1}, [[]], [{}], {"": None},
)  # fmt: skip
#: YAML-only spellings of values that plain data cannot carry.
_YAML_SWAPS = (
    "!!binary aGVsbG8=", "!!binary '%%%'", "!!set {a: null, b: null}", "!!omap [a: 1]",
    "!!timestamp 2001-12-14", "!!float nan", ".inf", "-.inf", "0x1F", "0o17", "0b101",
    "1_000", "~", "yes", "off", "!!int '12'", "!!int abc", "!!float abc", "!!str 12",
    "!!timestamp not-a-date", "!!python/object:os.system {}", "!custom 1", "1:20:30",
    "!!null ''", "'unterminated", '"\\x"', "&anchor 5", "*undefined",
)  # fmt: skip


def _type_swap(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    if not as_json and rng.random() < 0.3:
        return _with_placeholder(rng, doc, as_json, rng.choice(_YAML_SWAPS))
    _replace_random(rng, doc, copy.deepcopy(rng.choice(_SWAPS)))
    return _dump(doc, as_json).encode("utf-8")


def _huge_value(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    kind = rng.choice(("string", "string", "digits", "hex", "list", "map", "key"))
    if kind == "string":
        size = rng.choice((1_000, 10_000, 100_000))
        _replace_random(rng, doc, "x" * size)
    elif kind == "digits":
        return _with_placeholder(rng, doc, as_json, "9" * rng.choice((20, 400, 4301, 20_000)))
    elif kind == "hex" and not as_json:
        return _with_placeholder(rng, doc, as_json, "0x" + "f" * rng.choice((100, 2000, 50_000)))
    elif kind == "list":
        _replace_random(rng, doc, ["x"] * rng.choice((100, 1_000, 5_000)))
    elif kind == "map":
        _replace_random(rng, doc, {f"k{i}": i for i in range(rng.choice((100, 1_000, 2_000)))})
    else:
        _replace_random(rng, doc, {"k" * rng.choice((1_000, 100_000)): 1})
    return _dump(doc, as_json).encode("utf-8")


def _deep_nesting(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    levels = rng.choice((10, 50, 98, 99, 100, 101, 150, 1_000, 5_000))
    # On one line PyYAML's scanner looks up to 1024 characters ahead for a simple
    # key at every level (about 0.3 s here); across lines it does not.
    newline = "\n" if rng.random() < 0.7 else ""
    if rng.random() < 0.5:
        nested = ("[" + newline) * levels + "1" + "]" * levels
    else:
        nested = ('{"a": ' + newline) * levels + "1" + "}" * levels
    return _with_placeholder(rng, doc, as_json, nested)


def _unknown_field(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    mappings = [c for c in _containers(doc) if isinstance(c, dict)]
    if mappings:
        name = rng.choice(("bogus", "Spec", "hosts ", "x-y", "\u00fc"))
        rng.choice(mappings)[name] = copy.deepcopy(rng.choice(_SWAPS))
    return _dump(doc, as_json).encode("utf-8")


def _wrong_shape(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        return b""
    if choice == 1:
        return b"# only a comment\n"
    if choice == 2:
        return b"null\n"
    if choice == 3:
        return _dump([doc, "scalar", 1], as_json).encode("utf-8")
    if choice == 4:
        items = [doc, [], None]
        return _dump({"apiVersion": "v1", "kind": "List", "items": items}, as_json).encode()
    if choice == 5:
        return _dump(doc.get("kind", "x"), as_json).encode("utf-8")
    if choice == 6:
        return _dump({"apiVersion": "v1", "kind": "List", "items": doc}, as_json).encode("utf-8")
    return _dump([], as_json).encode("utf-8")


def _many_documents(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return ("---\n" * (DEFAULT_LIMITS.max_documents + 1)).encode()
    if choice == 1:
        items = "- {}\n" * (DEFAULT_LIMITS.max_documents + 1)
        return f"apiVersion: v1\nkind: List\nitems:\n{items}".encode()
    text = _dump(doc, False)
    return ("---\n" + text).encode("utf-8") * rng.choice((2, 3, 50))


# -- YAML aliases -------------------------------------------------------------------------


def _alias(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    """Anchors and aliases, from harmless to exponential, cyclic or undefined."""
    choice = rng.randrange(8)
    if choice == 0:  # a bomb of random width and depth, placed anywhere
        width, levels = rng.randint(2, 10), rng.randint(3, 10)
        return _with_anchors(rng, doc, _laughs(width, levels), f"*a{levels}")
    if choice == 1:  # a merge-key bomb
        width, levels = rng.randint(2, 6), rng.randint(3, 8)
        return _with_anchors(rng, doc, _merge_laughs(width, levels), f"*m{levels}")
    if choice == 2:
        return _with_placeholder(rng, doc, False, "&r [*r]")
    if choice == 3:
        return _with_placeholder(rng, doc, False, "*nowhere")
    if choice == 4:  # long text repeated by aliases
        big = "x" * rng.choice((1_000, 20_000))
        uses = ", ".join(["*s"] * rng.choice((5, 60)))
        return _with_anchors(rng, doc, f'"s": &s "{big}"\n', f"[{uses}]")
    if choice == 5:  # many cheap aliases
        uses = ", ".join(["*c"] * rng.choice((10, 1_001)))
        return _with_anchors(rng, doc, '"c": &c 1\n', f"[{uses}]")
    if choice == 6:  # duplicate anchors
        return _with_anchors(rng, doc, '"d": [&d 1, &d 2]\n', "*d")
    # a harmless alias: a copy of one of the document's own values
    return _self_alias(rng, doc)


def _laughs(width: int, levels: int) -> str:
    lines = ['"a0": &a0 "lol"\n']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f'"a{level}": &a{level} [{refs}]\n')
    return "".join(lines)


def _merge_laughs(width: int, levels: int) -> str:
    lines = ['"m0": &m0 {k0: lol, k1: lol}\n']
    for level in range(1, levels + 1):
        items = ", ".join(f"x{i}: *m{level - 1}" for i in range(width))
        lines.append(f'"m{level}": &m{level} {{<<: *m{level - 1}, {items}}}\n')
    return "".join(lines)


def _with_anchors(rng: random.Random, doc: Any, anchors: str, use: str) -> bytes:
    """``anchors`` (top-level YAML lines) first, then ``doc`` with one value replaced by ``use``."""
    body = _with_placeholder(rng, doc, False, use).decode("utf-8")
    return (anchors + body).encode("utf-8")


def _self_alias(rng: random.Random, doc: Any) -> bytes:
    text = _dump(doc, False)
    lines = text.splitlines(keepends=True)
    spots = [i for i, line in enumerate(lines) if ": " in line and not line.rstrip().endswith(":")]
    if len(spots) < 2:
        return text.encode("utf-8")
    first, second = sorted(rng.sample(spots, 2))
    key_a, _, value_a = lines[first].partition(": ")
    key_b, _, _ = lines[second].partition(": ")
    lines[first] = f"{key_a}: &v {value_a}"
    lines[second] = f"{key_b}: *v\n"
    return "".join(lines).encode("utf-8")


# -- text and byte mutations --------------------------------------------------------------


def _duplicate_key(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    if as_json:
        text = _dump(doc, True)
        return text.replace("{", '{"kind": "Duplicate",', 1).encode("utf-8")
    lines = _dump(doc, False).splitlines(keepends=True)
    keyed = [i for i, line in enumerate(lines) if ":" in line and not line.lstrip().startswith("-")]
    if keyed:
        i = rng.choice(keyed)
        lines.insert(i + 1, lines[i] if lines[i].endswith("\n") else lines[i] + "\n")
    return "".join(lines).encode("utf-8")


def _truncate(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    data = _dump(doc, as_json).encode("utf-8")
    return data[: rng.randrange(max(1, len(data)))]


_BAD_BYTES = (
    b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\xe2\x82",
    b"\xc0\xaf", b"\x80", b"\xf8\x88\x80\x80\x80",
)  # fmt: skip
_ODD_CHARS = ("\x00", "\x07", "\x1b", "\ufeff", "\u2028", "\ud7ff", "\ufffe", "\t", "\r")


def _bad_utf8(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    data = bytearray(_dump(doc, as_json).encode("utf-8"))
    for _ in range(rng.choice((1, 1, 3))):
        at = rng.randrange(len(data) + 1)
        if rng.random() < 0.6:
            data[at:at] = rng.choice(_BAD_BYTES)
        else:
            data[at:at] = rng.choice(_ODD_CHARS).encode("utf-8", "surrogatepass")
    return bytes(data)


def _byte_flips(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    data = bytearray(_dump(doc, as_json).encode("utf-8"))
    for _ in range(rng.choice((1, 2, 5, 20))):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _oversize(rng: random.Random, doc: Any, as_json: bool) -> bytes:
    """A document padded beyond the file limit, or beyond the request body limit.

    The second kind is within the file limit, so analyze would parse a megabyte
    of padding (a second of pure-Python scanning); a stray ``]`` before the
    padding ends the parse there and keeps the run short. The API refuses
    both by size (413) before parsing anything.
    """
    data = _dump(doc, False).encode("utf-8")
    if rng.random() < 0.5:
        return data + b"#" * (DEFAULT_LIMITS.max_file_bytes + 1 - len(data))
    data += b"]\n"
    return data + b"#" * (DEFAULT_LIMITS.max_body_bytes + 1 - len(data))


_Mutation = Callable[[random.Random, Any, bool], bytes]

#: ``(name, weight, mutation)``; weights keep slow inputs (huge values, ten
#: thousand documents: up to a second each) rare.
MUTATIONS: tuple[tuple[str, int, _Mutation], ...] = (
    ("unchanged", 40, _unchanged),
    ("delete_field", 120, _delete_field),
    ("type_swap", 160, _type_swap),
    ("huge_value", 6, _huge_value),
    ("deep_nesting", 40, _deep_nesting),
    ("unknown_field", 80, _unknown_field),
    ("wrong_shape", 40, _wrong_shape),
    ("many_documents", 3, _many_documents),
    ("alias", 100, _alias),
    ("duplicate_key", 60, _duplicate_key),
    ("truncate", 100, _truncate),
    ("bad_utf8", 80, _bad_utf8),
    ("byte_flips", 100, _byte_flips),
    ("oversize", 5, _oversize),
)
_YAML_ONLY = frozenset({"alias", "many_documents", "oversize"})
