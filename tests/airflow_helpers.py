"""Run a DAG for real inside a test: serialize it into the metadata DB, then ``dag.test()``.

Airflow 3 runs tasks only of DAGs it has serialized, and ``dag.test()`` looks for the DAG
in its bundles (the DAGs folder); a DAG built inside a test is in neither, so
``sync_dag`` writes it as the DAG processor would. Needs the ``airflow_home`` fixture
(a migrated database) first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

BUNDLE = "dags-folder"


def sync_dag(dag: Any) -> None:
    """Write ``dag`` (and the bundle rows it needs) to the metadata database."""
    from airflow.configuration import conf
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    Path(conf.get("core", "dags_folder")).mkdir(parents=True, exist_ok=True)
    with create_session() as session:
        DagBundlesManager().sync_bundles_to_db(session=session)
        session.flush()
        update_dag_parsing_results_in_db(
            BUNDLE, None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(),
            session=session,
        )


def run_dag(dag: Any, conf: Mapping[str, Any] | None = None,
            logical_date: datetime | None = None) -> Any:
    """Serialize ``dag`` then run one DAG run in this process; returns the DagRun."""
    sync_dag(dag)
    kwargs: dict[str, Any] = {"run_conf": dict(conf) if conf is not None else None}
    if logical_date is not None:  # dag.test() defaults to now; None would mean "no date"
        kwargs["logical_date"] = logical_date
    return dag.test(**kwargs)


def task_states(dag_run: Any) -> dict[str, str]:
    """``{task_id or task_id[map_index]: state}`` of a finished DAG run."""
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        return {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
            for ti in tis
        }


def task_log(dag_run: Any, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
    """The text of one task instance's log file (what the UI shows)."""
    from airflow.configuration import conf

    base = Path(conf.get("logging", "base_log_folder"))
    folder = base / f"dag_id={dag_run.dag_id}" / f"run_id={dag_run.run_id}" / f"task_id={task_id}"
    if map_index >= 0:
        folder = folder / f"map_index={map_index}"
    path = folder / f"attempt={try_number}.log"
    return path.read_text() if path.exists() else ""
