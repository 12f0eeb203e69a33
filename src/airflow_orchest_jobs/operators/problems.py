"""Stands in for a DAG whose Orchest files are invalid, so the error shows in the UI."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class InvalidOrchestFileOperator(BaseOperator):
    """Fails with the problems found in the file (never retried)."""

    ui_color = "#fde8e8"

    def __init__(self, *, problems: Sequence[str], **kwargs: Any):
        super().__init__(**kwargs)
        self.problems = list(problems)

    def execute(self, context: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("This Orchest file is invalid:\n" + "\n".join(self.problems))
