"""Hostile configuration texts shared by the parse-limit tests (loader, store, API)."""

from __future__ import annotations

__all__ = [
    "ALIAS_BOMB",
    "BILLION_LAUGHS",
    "deep_json",
    "deep_yaml_block",
    "deep_yaml_flow",
    "many_documents",
    "resource_with",
]

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


def resource_with(spec_yaml: str, name: str = "web") -> str:
    """A Service document with ``spec_yaml`` (one line of YAML) as its spec."""
    return f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {spec_yaml}\n"
