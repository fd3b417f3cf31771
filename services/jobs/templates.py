"""Render templates: the built-in definitions and the command-line builder.

`build_command(template, job, chunk, platform)` is pure (no database, no
I/O): the render-node agent imports it to turn an assignment into a process,
and the jobs service serves the same definitions (ListTemplates/GetTemplate),
so both sides build commands from one definition.

Tokens in a template's executable, arguments, working folder and environment:

    {start} {end} {step}   the chunk's first and last frame and frame step
    {start:N} {end:N}      the same, zero-padded to N digits (whole frames)
    {frame}                alias of {start} (one-frame chunks, slices)
    {slice}                the slice index (0-based; 0 unless packet type is slices)
    {chunk} {job}          the chunk id and the job id
    {@name}                the value of the job attribute `name`, whose own frame
                           tokens ({start}...) expand too
    {*name}                as a whole argument: the attribute's value split
                           like a shell would (shlex), one argument per word
    {{ }}                  literal braces

A missing attribute expands to the empty string ({@...}) or to no argument
({*...}). Attributes flagged `substitute_paths` go through `substitute` (the
node's repository path mapping, admin domain) before they are expanded.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.core.errors import InvalidArgument
from services.jobs.domain import Attribute

PLATFORMS = ("windows", "linux", "macos")

# Fixed ids of the built-in templates (docs/jobs.md). Muster's own ids (1 =
# Maya software, 37 = V-Ray, 48 = ffmpeg, 55 = Redshift) stay free for the
# studio's templates.
COMMAND_LINE_TEMPLATE_ID = 1000
BLENDER_TEMPLATE_ID = 1001


@dataclass(frozen=True)
class TemplateCommand:
    platform: str
    executable: str
    arguments: tuple[str, ...] = ()
    working_directory: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "executable": self.executable,
            "arguments": list(self.arguments),
            "working_directory": self.working_directory,
            "environment": dict(self.environment),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TemplateCommand:
        return cls(
            platform=str(raw["platform"]),
            executable=str(raw["executable"]),
            arguments=tuple(str(a) for a in raw.get("arguments", ())),
            working_directory=str(raw.get("working_directory", "")),
            environment={str(k): str(v) for k, v in raw.get("environment", {}).items()},
        )


@dataclass(frozen=True)
class Template:
    id: int
    name: str
    description: str = ""
    commands: tuple[TemplateCommand, ...] = ()
    log_error_patterns: tuple[str, ...] = ()
    log_warning_patterns: tuple[str, ...] = ()
    success_exit_codes: tuple[int, ...] = ()
    default_packet_type: str = "frames"
    script_name: str = ""
    enabled: bool = True

    def command_for(self, platform: str) -> TemplateCommand | None:
        return next((c for c in self.commands if c.platform == platform), None)


@dataclass(frozen=True)
class JobInput:
    """What the builder needs of a job."""

    id: int
    attributes: Sequence[Attribute] = ()
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkInput:
    """What the builder needs of a chunk."""

    id: int
    start_frame: float
    end_frame: float
    by_frame: float = 1.0
    slice_index: int = 0


@dataclass(frozen=True)
class BuiltCommand:
    """A process to start: no shell is involved."""

    executable: str
    arguments: tuple[str, ...]
    working_directory: str
    environment: Mapping[str, str]
    # Names of the attributes that went through path substitution.
    substituted: tuple[str, ...] = ()


def _same_on_every_platform(
    executable: str, arguments: tuple[str, ...], working_directory: str = ""
) -> tuple[TemplateCommand, ...]:
    return tuple(TemplateCommand(p, executable, arguments, working_directory) for p in PLATFORMS)


COMMAND_LINE = Template(
    id=COMMAND_LINE_TEMPLATE_ID,
    name="Command line",
    description=(
        "Runs any program once per chunk. Job attributes: executable (path of the program), "
        "arguments (a command line with frame tokens such as {start} {end} {step}, split like "
        "a shell would), working_folder (optional). The job's environment is added."
    ),
    commands=_same_on_every_platform("{@executable}", ("{*arguments}",), "{@working_folder}"),
    log_error_patterns=(),
    log_warning_patterns=(),
    success_exit_codes=(0,),
    default_packet_type="frames",
)

_BLENDER_ARGS = (
    "-b",
    "{@job_file}",
    "-o",
    "{@output_pattern}",
    "{*blender_arguments}",
    "-s",
    "{start}",
    "-e",
    "{end}",
    "-j",
    "{step}",
    "-a",
)

BLENDER = Template(
    id=BLENDER_TEMPLATE_ID,
    name="Blender",
    description=(
        "Blender in the background: blender -b <job_file> -o <output_pattern> -s <start> "
        "-e <end> -j <step> -a. Job attributes: job_file (the .blend scene), output_pattern "
        "(for example //render/shot_####), blender_arguments (optional extra arguments placed "
        "before the frame range, for example --engine CYCLES)."
    ),
    commands=(
        TemplateCommand(
            "windows",
            "C:\\Program Files\\Blender Foundation\\Blender\\blender.exe",
            _BLENDER_ARGS,
        ),
        TemplateCommand("linux", "blender", _BLENDER_ARGS),
        TemplateCommand("macos", "/Applications/Blender.app/Contents/MacOS/Blender", _BLENDER_ARGS),
    ),
    log_error_patterns=(r"^Error: ", r"^Traceback \(most recent call last\)", r"EXCEPTION_"),
    log_warning_patterns=(r"^Warning: ",),
    success_exit_codes=(0,),
    default_packet_type="frames",
)

BUILTIN_TEMPLATES: tuple[Template, ...] = (COMMAND_LINE, BLENDER)

_TOKEN = re.compile(r"\{\{|\}\}|\{([@*]?)([A-Za-z_][A-Za-z0-9_]*)(?::(\d{1,2}))?\}")


def format_frame(value: float, padding: int = 0) -> str:
    """A frame number as a command line wants it: whole frames without '.0'."""
    if float(value).is_integer():
        whole = int(value)
        return f"{whole:0{padding}d}" if padding else str(whole)
    return repr(float(value))


def _attribute_text(attribute: Attribute) -> str:
    value = attribute.value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format_frame(value)
    return str(value)


def build_command(
    template: Template,
    job: JobInput,
    chunk: ChunkInput,
    platform: str,
    substitute: Callable[[str], str] = lambda path: path,
) -> BuiltCommand:
    """The process that renders `chunk` of `job` on a node of `platform`.

    Raises InvalidArgument when the template has no command for the platform
    or uses an unknown token.
    """
    command = template.command_for(platform)
    if command is None:
        raise InvalidArgument(f"platform: template {template.id} has no command for {platform}")
    values: dict[str, str] = {}
    substituted: list[str] = []
    for attribute in job.attributes:
        text = _attribute_text(attribute)
        if attribute.substitute_paths and attribute.type == "string":
            text = substitute(text)
            substituted.append(attribute.name)
        values[attribute.name] = text
    frames = {
        "start": chunk.start_frame,
        "end": chunk.end_frame,
        "frame": chunk.start_frame,
    }
    plain = {
        "step": format_frame(chunk.by_frame),
        "slice": str(chunk.slice_index),
        "chunk": str(chunk.id),
        "job": str(job.id),
    }

    def expand(text: str, attributes: bool = True) -> str:
        def one(match: re.Match[str]) -> str:
            whole, sigil, name, padding = match.group(0), match[1], match[2], match[3]
            if whole in ("{{", "}}"):
                return whole[0]
            if sigil:
                # An attribute's own frame tokens expand too (one level: an
                # attribute never pulls in another one).
                return expand(values.get(name, ""), attributes=False) if attributes else whole
            if name in frames:
                return format_frame(frames[name], int(padding or 0))
            if name in plain and padding is None:
                return plain[name]
            raise InvalidArgument(f"template {template.id}: unknown token {whole}")

        return _TOKEN.sub(one, text)

    arguments: list[str] = []
    for argument in command.arguments:
        splat = re.fullmatch(r"\{\*([A-Za-z_][A-Za-z0-9_]*)\}", argument)
        if splat:
            arguments.extend(expand(word) for word in shlex.split(values.get(splat[1], "")))
        else:
            arguments.append(expand(argument))
    environment = {**command.environment, **job.environment}
    return BuiltCommand(
        executable=expand(command.executable),
        arguments=tuple(arguments),
        working_directory=expand(command.working_directory),
        environment={k: expand(v) for k, v in environment.items()},
        substituted=tuple(substituted),
    )
