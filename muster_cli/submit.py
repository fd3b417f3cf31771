"""Jobs from `muster submit`: mrtool-style flags and JSON or YAML job files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from muster_cli.app import call, connection, every_page, fail
from muster_proto.jobs.v1 import jobs_pb2

# The keys of a job file (docs/cli.md), each with its Job field.
_PLAIN = {
    "name": "name",
    "start_frame": "start_frame",
    "end_frame": "end_frame",
    "by_frame": "by_frame",
    "packet_size": "packet_size",
    "priority": "priority",
    "max_nodes": "max_nodes",
    "max_chunk_requeues": "max_chunk_requeues",
    "project": "project",
    "department": "department",
    "job_group": "job_group",
    "notes": "notes",
    "parent": "parent_id",
    "chunk_timeout_seconds": "chunk_timeout_seconds",
    "paused": "paused",
}
_LISTS = {"pools": "included_pools", "excluded_pools": "excluded_pools"}
_OTHER = {"template", "depends", "depend_mode", "attributes", "environment", "owner"}
KNOWN_KEYS = frozenset(_PLAIN) | frozenset(_LISTS) | _OTHER


def read_job_file(path: Path) -> list[dict[str, Any]]:
    """The job descriptions of a JSON or YAML file: one job, a list, or `jobs: [...]`."""
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        fail(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}")
    if isinstance(data, Mapping) and "jobs" in data:
        data = data["jobs"]
    entries = data if isinstance(data, list) else [data]
    if not entries or not all(isinstance(e, Mapping) for e in entries):
        fail(f"{path}: expected a job (a mapping of its fields) or a list of jobs")
    for entry in entries:
        unknown = sorted(set(entry) - KNOWN_KEYS)
        if unknown:
            fail(f"{path}: unknown job field(s) {', '.join(unknown)}")
    return [dict(e) for e in entries]


def parse_attributes(pairs: list[str]) -> dict[str, str]:
    """`-a key=value` options."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"attribute {pair!r} is not key=value", 2)
        found[key.strip()] = value
    return found


def split_list(values: list[str]) -> list[str]:
    """Repeated options and comma lists alike: `--pool a,b --pool c`."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def find_template(given: Any) -> jobs_pb2.Template:
    """A template by id or by name (case-insensitive)."""
    text = str(given).strip()
    stub = connection().jobs()
    if text.lstrip("-").isdigit():
        reply: jobs_pb2.GetTemplateResponse = call(
            stub.GetTemplate, jobs_pb2.GetTemplateRequest(template_id=int(text))
        )
        return reply.template
    for page in every_page(stub.ListTemplates, jobs_pb2.ListTemplatesRequest()):
        found: list[jobs_pb2.Template] = [
            t for t in page.templates if t.name.lower() == text.lower()
        ]
        if found:
            return found[0]
    fail(f"no template named {text!r} (see `muster templates`)")


def _attribute(name: str, value: Any) -> jobs_pb2.JobAttribute:
    attribute = jobs_pb2.JobAttribute(name=name)
    if isinstance(value, bool):
        attribute.bool_value = value
    elif isinstance(value, int):
        attribute.int_value = value
    elif isinstance(value, float):
        attribute.double_value = value
    elif isinstance(value, str):
        attribute.string_value = value
    else:
        fail(f"attribute {name}: a string, number or boolean, not {value!r}")
    return attribute


def build_job(spec: Mapping[str, Any]) -> tuple[jobs_pb2.Job, str]:
    """(the Job, its owner) from a job file entry merged with the flags."""
    if not spec.get("name"):
        fail("a job needs a name (-n/--name or `name:` in the job file)", 2)
    if spec.get("template") in (None, ""):
        fail("a job needs a template (-e/--template, an id or a name)", 2)
    # mrtool's defaults: one frame, step 1, the queue root.
    job = jobs_pb2.Job(
        kind=jobs_pb2.JOB_KIND_JOB, parent_id=-1, start_frame=1, end_frame=1, by_frame=1
    )
    try:
        for key, field in _PLAIN.items():
            if spec.get(key) is not None:
                setattr(job, field, type(getattr(job, field))(spec[key]))
        if spec.get("end_frame") is None:
            job.end_frame = job.start_frame
        for key, field in _LISTS.items():
            values = spec.get(key) or []
            getattr(job, field).extend(split_list([str(v) for v in _as_list(values)]))
        job.depend_ids.extend(
            int(d) for d in split_list([str(v) for v in _as_list(spec.get("depends") or [])])
        )
    except (TypeError, ValueError) as exc:
        fail(f"bad job field: {exc}", 2)
    mode = str(spec.get("depend_mode") or "").strip().lower()
    if mode:
        modes = {
            "success": jobs_pb2.DEPEND_MODE_SUCCESS,
            "completion": jobs_pb2.DEPEND_MODE_COMPLETION,
        }
        if mode not in modes:
            fail(f"depend_mode is success or completion, not {mode!r}", 2)
        job.depend_mode = modes[mode]
    # What the flags and the file leave out, the template's defaults give.
    template = find_template(spec["template"])
    job.template_id = template.id
    job.packet_size = job.packet_size or template.default_packet_size or 1
    job.priority = job.priority or template.default_priority
    if not job.included_pools:
        job.included_pools.extend(template.default_pools)
    if not job.excluded_pools:
        job.excluded_pools.extend(template.default_excluded_pools)
    attributes = spec.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        fail("attributes: a mapping of name to value", 2)
    job.attributes.extend(_attribute(str(k), v) for k, v in attributes.items())
    environment = spec.get("environment") or {}
    if not isinstance(environment, Mapping):
        fail("environment: a mapping of name to value", 2)
    job.environment.update({str(k): str(v) for k, v in environment.items()})
    owner = str(spec.get("owner") or "")
    job.owner = owner or connection().user()
    return job, owner


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
