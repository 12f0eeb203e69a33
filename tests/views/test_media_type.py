"""The actions' CSRF check: the Content-Type is parsed, not searched for a substring."""

from __future__ import annotations

import pytest

from airflow_orchest_jobs.web.api import is_json_media_type


@pytest.mark.parametrize("value", [
    "application/json", "Application/JSON", "application/json; charset=utf-8",
    'application/json;charset="utf-8"', "application/json ; charset=UTF-8 ",
])
def test_json_with_parameters_is_json(value):
    assert is_json_media_type(value)


@pytest.mark.parametrize("value", [
    None, "", "text/plain; a=application/json", "application/jsonx", "xapplication/json",
    "application/json, text/plain", "application/json;", "application/json; charset",
    "multipart/form-data; boundary=application/json", "application/x-www-form-urlencoded",
    "text/plain", "application/json+evil", "application/json\x00",
])
def test_anything_else_is_not(value):
    assert not is_json_media_type(value)
