"""Reading a study file's YAML and saying where in it a problem is.

`sweep.config` validates a study with pydantic; this module gives it the safe YAML parse (a compose
tree kept for its line/column marks, no tags that run code) and turns a pydantic error into one
line, `file:line:col: key.path: message`, with the nearest valid key for a misspelt one.
"""

from __future__ import annotations

import difflib
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sweep.errors import ConfigError


class PathError(ValueError):
    """A validation error that knows the key path below the field pydantic is validating."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def nearest(key: object, valid: typing.Iterable[str]) -> str | None:
    found = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_key(key: object, valid: typing.Iterable[str], what: str = "key") -> str:
    valid = sorted(valid)
    near = nearest(key, valid)
    hint = f"did you mean '{near}'?" if near else f"valid: {', '.join(valid)}"
    return f"unknown {what} '{key}' ({hint})"


# repr() of a value as a message shows it, cut short before it is built: a list reached through
# nested aliases may stand for billions of items (see `parse`).
_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = _REPR.maxother = 60


def short(value: object, limit: int = 50) -> str:
    """A bounded repr of `value` for messages, at most `limit` characters."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error(text: str) -> ConfigError:
    """A ConfigError on one printable line, whatever odd characters the file's keys hold."""
    return ConfigError("".join(c if c.isprintable() else repr(c)[1:-1] for c in text))


def position(mark: yaml.Mark | None) -> str:
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


# A study file is a few hundred nodes; the bound is far above any real one and far below what
# takes noticeable time or memory to validate.
MAX_NODES = 100_000
MAX_FILE_BYTES = 2**20


def oversized_node(root: yaml.Node, limit: int = MAX_NODES) -> yaml.Node | None:
    """The innermost node that stands for more than `limit` nodes once its aliases (and `<<`
    merges) are expanded, or None when the whole document stays below that.

    Nodes are counted once each, memoised, without expanding anything: a few hundred bytes of
    nested aliases ("billion laughs") stand for billions of nodes, safe to compose and to
    construct (the constructed objects are shared), ruinous for anything that walks the data,
    such as validation or an error message's repr.
    """
    sizes: dict[int, int] = {}
    culprit: list[yaml.Node] = []

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:  # a node seen before: an alias to it
            return known
        sizes[id(node)] = 1  # a node that contains itself counts once (constructed as a cycle)
        total = 1
        children = node.value if isinstance(node, yaml.CollectionNode) else []
        for child in children:
            for sub in child if isinstance(child, tuple) else (child,):
                total += size(sub)
                if total > limit:
                    break
            if total > limit:
                break
        if total > limit and not culprit:
            culprit.append(node)  # inner nodes finish first: this is the innermost one
        sizes[id(node)] = total
        return total

    size(root)
    return culprit[0] if culprit else None


def parse(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """(compose tree, data) with the safe loader's constructors: tags that run code are errors.

    Refused before anything walks the data: a file over MAX_FILE_BYTES, and a document whose
    aliases expand to more than MAX_NODES nodes (see `oversized_node`).
    """
    if len(text) > MAX_FILE_BYTES:
        raise error(
            f"{path}: the study file is {len(text)} characters; a study file is at most "
            f"{MAX_FILE_BYTES} (is this the right file?)"
        )
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters right here
        node = loader.get_single_node()
        if node is not None:
            culprit = oversized_node(node)
            if culprit is not None:
                raise error(
                    f"{path}{position(culprit.start_mark)}: the YAML aliases here expand to more "
                    f"than {MAX_NODES} values; write the values out instead of nesting aliases"
                )
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise error(f"{path}{position(where)}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
        # The safe constructors raise plain exceptions on some bad explicit tags (`!!float abc`).
        raise error(f"{path}: invalid YAML value: {short(str(exc), 80)}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return node, data


def find_duplicate_key(node: yaml.Node, seen: set[int] | None = None) -> yaml.Node | None:
    # safe_load keeps the last of two equal keys silently; a study with two `trials:` is a mistake.
    seen = set() if seen is None else seen
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if (key.tag, key.value) in keys:
                    return key
                keys.add((key.tag, key.value))
    children = node.value if isinstance(node, yaml.CollectionNode) else []
    for child in children:
        for sub in child if isinstance(child, tuple) else (child,):
            found = find_duplicate_key(sub, seen)
            if found is not None:
                return found
    return None


def node_mark(root: yaml.Node | None, loc: tuple[str | int, ...]) -> yaml.Mark | None:
    """The mark of the deepest YAML node along `loc` (a key's own mark for mapping keys)."""
    node, mark = root, root.start_mark if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node, mark = value, key.start_mark
                    break
            else:
                return mark
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return mark
            node = node.value[part]
            mark = node.start_mark
        else:
            return mark
    return mark


def _model_keys(
    root: type[BaseModel], root_keys: tuple[str, ...], loc: tuple[str | int, ...]
) -> list[str] | None:
    """Valid keys of the pydantic model that holds the mapping at `loc` (None if not a model)."""
    current: Any = root
    parts = list(loc)
    while True:
        origin = typing.get_origin(current)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if len(args) == 1 else None
            continue
        if origin is typing.Annotated:
            current = typing.get_args(current)[0]
            continue
        if not parts:
            break
        part = parts.pop(0)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
        elif origin in (dict, list):
            current = typing.get_args(current)[-1]
        else:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        if current is root:
            return list(root_keys)
        return list(current.model_fields)
    return None


def path_text(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_COMPARISONS = (
    ("greater than or equal to", ">="),
    ("less than or equal to", "<="),
    ("greater than", ">"),
    ("less than", "<"),
)


def config_error(
    exc: ValidationError,
    path: Path,
    root: yaml.Node | None,
    model: type[BaseModel],
    model_keys: tuple[str, ...],
) -> ConfigError:
    """The first pydantic error as one line: file:line:col: key.path: message."""
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, PathError):
        loc = loc + cause.path
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _model_keys(model, model_keys, loc[:-1]) or []
        message = unknown_key(loc[-1], valid)
    elif kind == "missing":
        message = f"missing required key '{loc[-1]}'"
    elif kind == "value_error" and cause is not None:
        message = str(cause)
    else:
        text = err["msg"].replace("Input should", "should")
        for words, sign in _COMPARISONS:
            text = text.replace(words, sign)
        text = re.sub(r"a valid dictionary( or instance of \w+)?", "a mapping", text)
        message = f"{text} (got {short(err.get('input'))})"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    mark = node_mark(root, loc[:-1] if kind == "missing" else loc)
    where = path_text(loc) or "(top level)"
    return error(f"{path}{position(mark)}: {where}: {message}")
