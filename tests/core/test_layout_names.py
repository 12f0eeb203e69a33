"""Store names: injective (``x:1`` and ``x_1`` never share a folder), one plain entry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_orchest_jobs.core.jobstate import FrozenJob, JobStates
from airflow_orchest_jobs.core.layout import MAX_NAME, StoreLayout, id_of, safe_name

#: Every code point, lone surrogates included (ids come from URLs and the database).
IDS = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=400)


def plain_entry(name: str) -> bool:
    return (name not in ("", ".", "..") and not name.startswith(".") and "/" not in name
            and "\0" not in name and len(name.encode()) <= MAX_NAME)


@settings(max_examples=2000, deadline=None, database=None)
@given(IDS, IDS)
def test_names_are_injective(a, b):
    if a != b:
        assert safe_name(a) != safe_name(b)


@settings(max_examples=2000, deadline=None, database=None)
@given(IDS)
def test_a_name_is_one_plain_entry_and_gives_its_id_back(text):
    name = safe_name(text)
    assert plain_entry(name), name
    assert id_of(name) in (text, None)
    if len(name) < MAX_NAME - 40:
        assert id_of(name) == text


def test_names_that_used_to_collide_or_escape():
    assert safe_name("x:1") != safe_name("x_1")
    assert safe_name("..") == "%2E." and safe_name(".") == "%2E" and safe_name("") == "%"
    assert safe_name("../../etc") == "%2E.%2F..%2Fetc"
    assert safe_name("%3A") != safe_name(":")
    # Airflow's own ids stay as they are (folders of existing stores keep their names).
    assert safe_name("orchest__proj__main") == "orchest__proj__main"
    assert safe_name("scheduled__2026-01-01T00:00:00+00:00") == \
        "scheduled__2026-01-01T00%3A00%3A00%2B00%3A00"
    long_a, long_b = "r" * 250 + "a", "r" * 250 + "b"
    assert safe_name(long_a) != safe_name(long_b)
    assert len(safe_name(long_a)) <= MAX_NAME and id_of(safe_name(long_a)) is None


def test_colliding_run_ids_get_their_own_folders_and_job_states(tmp_path):
    layout = StoreLayout(tmp_path)
    assert layout.job_run("d", "x:1") != layout.job_run("d", "x_1")
    assert layout.job_run("d", "..").parent == layout.dag_runs("d")
    states = JobStates(tmp_path)
    for key in ("d/x:1", "d/x_1"):
        states.put(FrozenJob(key, f"snap-{key}", {}, "p.orchest", "now"))
    assert states.get("d/x:1").snapshot_id == "snap-d/x:1"
    assert states.get("d/x_1").snapshot_id == "snap-d/x_1"
    assert {s.job_key for s in states.all()} == {"d/x:1", "d/x_1"}
