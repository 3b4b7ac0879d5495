"""Reading one catalog YAML file: its data, a line for every path, `${VAR}` interpolation.

String scalars may use `${VAR}` or `${VAR:-default}` (the default also applies when VAR is
empty); `$${` is a literal `${`. Duplicate keys are problems, not silent overwrites.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from switchyard.catalog.problems import DocPath, Problem, dotted

_STR_TAG = "tag:yaml.org,2002:str"
_VARIABLE = re.compile(r"\$\$\{|\$\{([^}]*)(\}?)")
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)


# --- reading one YAML file, with a line for every path ---------------------------------


@dataclass
class Document:
    """One parsed file: its data, and where each path in it sits in the text."""

    file: Path
    data: Any = None
    lines: dict[DocPath, int] = field(default_factory=dict)
    nodes: dict[DocPath, Node] = field(default_factory=dict)
    # Paths whose value came from the environment (never echoed: it may be a secret), and
    # those whose interpolation failed (already reported; what follows from it is noise).
    from_env: set[DocPath] = field(default_factory=set)
    env_failed: set[DocPath] = field(default_factory=set)
    interpolated: set[int] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: DocPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: DocPath, message: str, fix: str, line: int | None = None) -> None:
        self.problems.append(
            Problem(self.file, line or self.line(path), dotted(path), message, fix)
        )


def read_document(file: Path, env: Mapping[str, str]) -> Document:
    doc = Document(file)
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        doc.problem((), f"not UTF-8 text ({exc.reason})", "save the file as UTF-8")
        return doc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return doc
        doc.lines[()] = node.start_mark.line + 1
        _walk(node, (), doc, env, set())
        doc.data = loader.construct_document(node)  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark is not mark:
            context += f" (started on line {exc.context_mark.line + 1})"
        message = " ".join(str(p) for p in (context, exc.problem) if p)
        doc.problems.append(Problem(file, line, "", f"YAML syntax: {message}", _yaml_fix(message)))
    except (yaml.YAMLError, ValueError) as exc:
        # Reader errors and bad implicit timestamps (2024-13-01) carry no usable mark.
        doc.problems.append(Problem(file, None, "", f"YAML: {exc}", "fix the YAML"))
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]
    return doc


def _yaml_fix(message: str) -> str:
    if "'\\t'" in message:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in message:
        return "quote the value if it contains ': ', or fix the indentation"
    if "expected a single document" in message:
        return "keep one document per file (remove the '---' separator)"
    return "check the indentation and quoting around this line"


def _walk(
    node: Node, path: DocPath, doc: Document, env: Mapping[str, str], stack: set[int]
) -> None:
    if id(node) in stack:  # a recursive alias; the constructor handles it, we stop here
        return
    stack = stack | {id(node)}
    if isinstance(node, MappingNode):
        first_seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            child = (*path, key)
            if key in first_seen:
                doc.problem(
                    child,
                    f"duplicate key {key!r} (first on line {first_seen[key]})",
                    f"remove one: YAML silently keeps only the last (line {line})",
                    line,
                )
            first_seen.setdefault(key, line)
            doc.lines[child], doc.nodes[child] = line, value_node
            _walk(value_node, child, doc, env, stack)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            doc.lines[child], doc.nodes[child] = item.start_mark.line + 1, item
            _walk(item, child, doc, env, stack)
    elif isinstance(node, ScalarNode) and node.tag == _STR_TAG and "${" in node.value:
        if id(node) in doc.interpolated:  # an alias of a scalar already done
            return
        doc.interpolated.add(id(node))

        def report(message: str, fix: str) -> None:
            doc.problem(path, message, fix)
            doc.env_failed.add(path)

        node.value, used_env = _interpolate(node.value, env, report)
        if used_env:
            doc.from_env.add(path)


def _interpolate(
    text: str, env: Mapping[str, str], report: Callable[[str, str], None]
) -> tuple[str, bool]:
    """The text with references replaced, and whether any value came from `env`."""
    used_env = False

    def replace(match: re.Match[str]) -> str:
        nonlocal used_env
        if match[0] == "$${":
            return "${"
        body, closed = match[1], match[2]
        reference = _REFERENCE.match(body)
        if not closed or reference is None:
            report(
                f"malformed variable reference {match[0]!r}",
                "write ${NAME} or ${NAME:-default}; use $${ for a literal ${",
            )
            return match[0]
        name, default = reference[1], reference[2]
        value = env.get(name)
        if value:
            used_env = True
            return value
        if default is not None:
            return default
        if value is None:
            report(
                f"environment variable {name} is not set",
                f"set {name}, or give a default: ${{{name}:-value}}",
            )
        return ""

    return _VARIABLE.sub(replace, text), used_env
