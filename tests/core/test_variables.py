"""Project and pipeline variables: their Airflow Variable names, format and precedence."""

from __future__ import annotations

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.variables import (
    merge_levels,
    parse_level,
    pipeline_variable,
    project_variable,
    split_values,
)


def test_variable_names_follow_the_dag_ids():
    assert project_variable("weather report") == "orchest_env__weather_report"
    assert pipeline_variable("p", "sub/main.orchest") == "orchest_env__p__sub_main"


def test_orchests_own_precedence_example():
    project = {"a": "1", "b": "2", "c": "3", "e": "ePrVal"}
    pipeline = {"b": "2", "c": "override", "d": "4"}
    job = {"c": "cJVal", "d": "dJVal", "e": "eJVal", "f": "fJVal"}
    assert merge_levels([project, pipeline, job]) == {
        "a": "1", "b": "2", "c": "cJVal", "d": "dJVal", "e": "eJVal", "f": "fJVal"}


def test_values_may_be_references_kept_apart_from_plain_strings():
    level = parse_level("k", '{"A": "x", "T": {"airflow_variable": "token"}}')
    assert split_values(level) == ({"A": "x"}, {"T": {"airflow_variable": "token"}})
    assert parse_level("k", None) == {} and parse_level("k", "  ") == {}


@pytest.mark.parametrize(("text", "message"), [
    ('{"A": 1', "Airflow Variable k: is not valid JSON (Expecting ',' delimiter); store an "
                "object such as {\"NAME\": \"value\"}"),
    ('{"bad name": "x"}', "Airflow Variable k: (top level): name \"bad name\" is not allowed"),
    ('["A"]', "Airflow Variable k: (top level): must be an object"),
])
def test_a_malformed_variable_is_one_clear_line(text, message):
    with pytest.raises(OrchestError) as exc:
        parse_level("k", text)
    assert str(exc.value).startswith(message), str(exc.value)
