"""The one key this package adds to Airflow's task context: a mapped run's label."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Names a mapped task instance after its pipeline run (rendered with the task context).
MAP_INDEX_TEMPLATE = "{{ orchest_run_label }}"


def name_map_index(context: Context, label: str) -> None:
    """Give ``MAP_INDEX_TEMPLATE`` its value for this task instance.

    Airflow renders ``map_index_template`` with the task context and documents adding
    one's own key to it for that (dynamic task mapping, "Named mapping"); its ``Context``
    TypedDict lists only Airflow's keys.
    """
    context["orchest_run_label"] = label  # type: ignore[typeddict-unknown-key]
