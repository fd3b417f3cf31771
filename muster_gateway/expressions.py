"""Muster's inline expressions and custom-action command lines, evaluated.

One evaluator serves both sides: the agent (chunk actions, environment
values and command-line fields, with `job` and `chunk` bound, in the
"renderclient" context) and the jobs service (pre/post job actions, with
`chunk` None, in the "dispatcher" context). docs/jobs.md, "Custom actions
and inline expressions", is the user's description.

- `<%= expression %>` is replaced by `str(expression)`;
- `<% statements %>` runs the statements; what they give to
  `muster.expressionPrint(text)` replaces the block (no newline added);
- in an action's command line (action=True), a backslash escapes one of
  ``; = % > < : / \\`` (the character is kept, the backslash dropped; any
  other backslash stays) and `%ATTR(name)` is replaced by the job's attribute
  `name` (or its field: `%ATTR(job_id)`, `%ATTR(name)`...; "" when it has
  neither).

Text without `<%` is returned as it is, without any Python evaluation (and,
outside actions, without even being copied). Code runs only where a
statement that hangs, exits or crashes takes nothing else down: on the node
in the agent instance's template host (muster_agent/template_host.py, op
"expand": `request` -> `answer`, under the callbacks' time limit; a host
that dies is started again), on the dispatcher in a child process
(`python -m muster_gateway.expressions`, see `evaluate`).
"""

from __future__ import annotations

import base64
import builtins
import json
import linecache
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from muster_gateway.context import CONTEXT_VARIABLE
from muster_proto.jobs.v1 import jobs_pb2

OPEN = "<%"
CLOSE = "%>"
ATTR = "%ATTR("
ESCAPABLE = frozenset(";=%><:/\\")
# The job attributes that hold custom actions (Muster's names).
PRE_JOB_ACTION = "pre_job_action"
POST_JOB_ACTION = "post_job_action"
PRE_CHUNK_ACTION = "pre_chunk_action"
POST_CHUNK_ACTION = "post_chunk_action"
ACTION_ATTRIBUTES = (PRE_JOB_ACTION, POST_JOB_ACTION, PRE_CHUNK_ACTION, POST_CHUNK_ACTION)
# How long the child may take for all the fields of one request.
DEFAULT_SECONDS = 30.0


class ExpressionError(Exception):
    """A field's expression cannot be evaluated: `field` names it, `detail`
    holds the traceback (or the syntax error)."""

    def __init__(self, field: str, message: str, detail: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.detail = detail or message


@dataclass(frozen=True)
class Field:
    """A text to expand: `key` names it in answers and errors; `action` says
    it is a custom action's command line (escapes and %ATTR apply)."""

    key: str
    text: str
    action: bool = False


def has_code(text: str) -> bool:
    return OPEN in text


def shell_command(command: str) -> tuple[str, list[str]]:
    """The system shell running an action's command line (expanded)."""
    if sys.platform.startswith("win"):
        return os.environ.get("COMSPEC", "cmd.exe"), ["/c", command]
    return "/bin/sh", ["-c", command]


# --- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Code:
    source: str
    statements: bool  # <% %> rather than <%= %>
    offset: int


@dataclass(frozen=True)
class _Attr:
    name: str


_Part = str | _Code | _Attr


def _parse(text: str, action: bool) -> list[_Part]:
    """The text as literal pieces, code blocks and %ATTR references; raises
    ExpressionError (without a field) for an unterminated block."""
    parts: list[_Part] = []
    literal: list[str] = []
    i, end = 0, len(text)
    while i < end:
        if action and text[i] == "\\" and i + 1 < end and text[i + 1] in ESCAPABLE:
            literal.append(text[i + 1])
            i += 2
        elif text.startswith(OPEN, i):
            close = text.find(CLOSE, i + 2)
            if close < 0:
                raise ExpressionError("", f"'<%' at offset {i} has no closing '%>'")
            source = text[i + 2 : close]
            statements = not source.startswith("=")
            parts.append("".join(literal))
            literal = []
            parts.append(_Code(source if statements else source[1:], statements, i))
            i = close + 2
        elif action and text.startswith(ATTR, i) and text.find(")", i) > 0:
            close = text.find(")", i)
            parts.append("".join(literal))
            literal = []
            parts.append(_Attr(text[i + len(ATTR) : close].strip()))
            i = close + 1
        else:
            literal.append(text[i])
            i += 1
    parts.append("".join(literal))
    return [p for p in parts if p != ""]


def _compile(code: _Code, name: str) -> Any:
    source = textwrap.dedent(code.source).strip() if code.statements else code.source.strip()
    if not source:
        return None
    filename = f"<expression at offset {code.offset} of {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec" if code.statements else "eval")


def check(text: str, name: str, *, action: bool = False) -> None:
    """Raises ExpressionError when the text's expressions cannot even be
    compiled (a missing '%>', a syntax error): for validating a submission.
    Compiling runs nothing."""
    if not has_code(text):
        return
    try:
        for part in _parse(text, action):
            if isinstance(part, _Code):
                _compile(part, name)
    except ExpressionError as exc:
        raise ExpressionError(name, exc.message) from None
    except SyntaxError as exc:
        raise ExpressionError(name, f"{exc.msg} in {exc.filename} line {exc.lineno}") from None


# --- evaluation ---------------------------------------------------------------------------


class _Printer:
    """The `muster` module as an expression sees it: expressionPrint adds to
    the block's output; everything else is the real module's."""

    def __init__(self) -> None:
        self.output: list[str] = []

    def expressionPrint(self, text: object) -> None:
        self.output.append(str(text))

    def __getattr__(self, name: str) -> Any:
        import muster

        return getattr(muster, name)


def string_attribute(job: jobs_pb2.Job, name: str) -> str:
    """The job's string attribute `name` ("" when it has none)."""
    for attribute in job.attributes:
        if attribute.name == name and attribute.WhichOneof("value") == "string_value":
            return attribute.string_value
    return ""


def attribute_text(job: jobs_pb2.Job, name: str) -> str:
    """%ATTR(name): the job's attribute, else its field (job_id is its id)."""
    for attribute in job.attributes:
        if attribute.name == name:
            kind = attribute.WhichOneof("value")
            return "" if kind is None else str(getattr(attribute, kind))
    field = "id" if name in ("job_id", "id") else name
    if field in jobs_pb2.Job.DESCRIPTOR.fields_by_name:
        descriptor = jobs_pb2.Job.DESCRIPTOR.fields_by_name[field]
        if descriptor.message_type is None and not descriptor.is_repeated:
            value = getattr(job, field)
            if isinstance(value, float) and value.is_integer():
                return str(int(value))
            return str(value)
    return ""


def expand(
    text: str,
    job: jobs_pb2.Job,
    chunk: jobs_pb2.Chunk | None,
    *,
    action: bool = False,
    name: str = "",
) -> str:
    """The text with its expressions evaluated (and, for an action, its
    escapes and %ATTR references applied); raises ExpressionError with the
    traceback. Runs the code it meets: call it only in the child process
    (or on text without code)."""
    if not action and not has_code(text):
        return text
    try:
        parts = _parse(text, action)
    except ExpressionError as exc:
        raise ExpressionError(name, exc.message) from None
    names: dict[str, Any] | None = None
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, _Attr):
            out.append(attribute_text(job, part.name))
        else:
            if names is None:
                names = _names(job, chunk)
            out.append(_run(part, names, name))
    return "".join(out)


def _names(job: jobs_pb2.Job, chunk: jobs_pb2.Chunk | None) -> dict[str, Any]:
    from muster_gateway.objects import MChunk, MJob

    return {
        "__builtins__": builtins,
        "job": MJob(job),
        "chunk": None if chunk is None else MChunk(chunk),
    }


def _run(code: _Code, names: dict[str, Any], name: str) -> str:
    printer = _Printer()
    names["muster"] = printer
    try:
        compiled = _compile(code, name or "the text")
        if compiled is None:
            return ""
        if code.statements:
            exec(compiled, names)
            return "".join(printer.output)
        return str(eval(compiled, names))
    except Exception as exc:
        kind = "statements" if code.statements else "expression"
        raise ExpressionError(
            name,
            f"the {kind} at offset {code.offset} raised {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from None


def expand_all(
    fields: Sequence[Field], job: jobs_pb2.Job, chunk: jobs_pb2.Chunk | None
) -> dict[str, str]:
    return {f.key: expand(f.text, job, chunk, action=f.action, name=f.key) for f in fields}


# --- the child process --------------------------------------------------------------------


def request(
    fields: Sequence[Field], job: jobs_pb2.Job, chunk: jobs_pb2.Chunk | None
) -> dict[str, Any]:
    """What an evaluator (the child process, the agent's template host) is sent."""
    return {
        "job": base64.b64encode(job.SerializeToString()).decode(),
        "chunk": "" if chunk is None else base64.b64encode(chunk.SerializeToString()).decode(),
        "fields": [[f.key, f.text, f.action] for f in fields],
    }


def answer(asked: Mapping[str, Any]) -> dict[str, Any]:
    """The evaluator's side: the fields of a `request`, expanded (runs code)."""
    job = jobs_pb2.Job.FromString(base64.b64decode(asked["job"]))
    chunk = jobs_pb2.Chunk.FromString(base64.b64decode(asked["chunk"])) if asked["chunk"] else None
    fields = [Field(str(k), str(t), bool(a)) for k, t, a in asked["fields"]]
    try:
        return {"values": expand_all(fields, job, chunk)}
    except ExpressionError as exc:
        return {"expression_error": [exc.field, exc.message, exc.detail]}


def values_of(answered: Mapping[str, Any]) -> dict[str, str]:
    """The values of an `answer`; raises its ExpressionError."""
    failed = answered.get("expression_error")
    if failed:
        field, message, detail = (str(part) for part in failed)
        raise ExpressionError(field, message, detail)
    values: dict[str, str] = answered["values"]
    return values


def evaluate(
    fields: Sequence[Field],
    job: jobs_pb2.Job,
    chunk: jobs_pb2.Chunk | None,
    *,
    context: str,
    timeout: float = DEFAULT_SECONDS,
    environment: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every field expanded: in this process when none holds code, else in a
    child process in `context` ("renderclient", "dispatcher"). Blocking (run
    it in a thread from asyncio). Raises ExpressionError, also when the child
    overruns `timeout` or dies."""
    if not any(has_code(f.text) for f in fields):
        return expand_all(fields, job, chunk)
    env = {**(os.environ if environment is None else environment), CONTEXT_VARIABLE: context}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "muster_gateway.expressions"],
            input=json.dumps(request(fields, job, chunk)),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExpressionError("", f"the expressions took longer than {timeout:g}s") from None
    except OSError as exc:
        raise ExpressionError("", f"cannot start the expression evaluator: {exc}") from None
    try:
        answered = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip()[-2000:]
        raise ExpressionError(
            "", f"the expression evaluator ended with code {done.returncode}", tail
        ) from None
    return values_of(answered)


def main() -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # what the code prints must not corrupt the answer
    answered = answer(json.loads(sys.stdin.read()))
    out.write("\n" + json.dumps(answered) + "\n")
    out.flush()


if __name__ == "__main__":
    main()


__all__ = [
    "ACTION_ATTRIBUTES",
    "POST_CHUNK_ACTION",
    "POST_JOB_ACTION",
    "PRE_CHUNK_ACTION",
    "PRE_JOB_ACTION",
    "ExpressionError",
    "Field",
    "answer",
    "attribute_text",
    "check",
    "evaluate",
    "expand",
    "expand_all",
    "has_code",
    "request",
    "shell_command",
    "string_attribute",
    "values_of",
]
