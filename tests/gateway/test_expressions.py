"""The inline-expression evaluator and the action command lines' escapes and
%ATTR (muster_gateway/expressions.py)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from muster_gateway.expressions import (
    ExpressionError,
    Field,
    attribute_text,
    check,
    evaluate,
    expand,
    has_code,
)
from muster_proto.jobs.v1 import jobs_pb2

JOB = jobs_pb2.Job(
    id=12,
    name="shot010",
    start_frame=1,
    end_frame=20,
    attributes=[
        jobs_pb2.JobAttribute(name="scene", string_value="/shows/a.ma"),
        jobs_pb2.JobAttribute(name="samples", int_value=64),
    ],
)
CHUNK = jobs_pb2.Chunk(id=3, job_id=12, start_frame=5, end_frame=8, by_frame=1)


def test_text_without_markers_is_given_back_as_it_is() -> None:
    text = r"100% \; %ATTR(scene) C:\dir {start}"
    assert expand(text, JOB, CHUNK) is text
    assert not has_code(text)


def test_an_expression_inserts_its_value_and_statements_what_they_print() -> None:
    assert expand("f<%= int(chunk.getStartFrame()) %>-<%=job.getJobId()%>", JOB, CHUNK) == "f5-12"
    text = "<% for f in range(2):\n    muster.expressionPrint(f) %>|<% x = 1 %>|"
    assert expand(text, JOB, CHUNK) == "01||"
    assert expand("<%= chunk is None %>", JOB, None) == "True"
    assert expand("<%= muster.runningContext() %>", JOB, None) == "console"


def test_escapes_and_attributes_apply_to_actions_only() -> None:
    action = r"copy %ATTR(scene) %ATTR(job_id) %ATTR(samples) %ATTR(missing)\;\=\%\>\<\:\/\\ \n"
    assert expand(action, JOB, None, action=True) == r"copy /shows/a.ma 12 64 ;=%><:/\ \n"
    assert expand(r"\%ATTR(scene) \<%= 1 %>", JOB, None, action=True) == "%ATTR(scene) <%= 1 %>"
    assert expand(r"%ATTR(scene) <%= 1 %>", JOB, None) == "%ATTR(scene) 1"
    assert attribute_text(JOB, "end_frame") == "20"
    assert attribute_text(JOB, "name") == "shot010"


def test_a_raising_expression_names_its_field_with_the_traceback() -> None:
    with pytest.raises(ExpressionError) as caught:
        expand("a <%= 1 // 0 %>", JOB, CHUNK, name="job.environment[X]")
    assert str(caught.value) == (
        "job.environment[X]: the expression at offset 2 raised ZeroDivisionError:"
        " integer division or modulo by zero"
    )
    assert "Traceback (most recent call last)" in caught.value.detail
    assert "1 // 0" in caught.value.detail


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<%= 1", "x: '<%' at offset 0 has no closing '%>'"),
        ("a <%= job. %>", "x: invalid syntax in <expression at offset 2 of x> line 1"),
    ],
)
def test_check_refuses_what_cannot_compile_without_running_anything(
    text: str, message: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        check(text, "x")
    assert str(caught.value) == message
    check("<% raise SystemExit(1) %> plain", "x")  # compiled, never run
    check(r"\<% not code", "x", action=True)


def test_evaluate_runs_code_in_a_child_process_in_the_given_context() -> None:
    values = evaluate(
        [
            Field("a", "<%= muster.runningContext() %>"),
            Field("b", "plain"),
            Field("c", "%ATTR(scene)", action=True),
        ],
        JOB,
        CHUNK,
        context="renderclient",
    )
    assert values == {"a": "renderclient", "b": "plain", "c": "/shows/a.ma"}
    with pytest.raises(ExpressionError) as caught:
        evaluate([Field("a", "<% import os; os._exit(3) %>")], JOB, None, context="dispatcher")
    assert str(caught.value) == "the expression evaluator ended with code 3"
    with pytest.raises(ExpressionError) as caught:
        evaluate(
            [Field("a", "<% import time; time.sleep(30) %>")], JOB, None, context="x", timeout=1
        )
    assert str(caught.value) == "the expressions took longer than 1s"


def test_evaluate_without_code_starts_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a process was started")

    monkeypatch.setattr(subprocess, "run", refuse)
    values = evaluate(
        [Field("a", "plain"), Field("b", r"x\;%ATTR(job_id)", action=True)],
        JOB,
        None,
        context="renderclient",
    )
    assert values == {"a": "plain", "b": "x;12"}
