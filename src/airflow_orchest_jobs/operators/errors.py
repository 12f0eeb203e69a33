"""User errors as Airflow failures: one readable message, never retried.

A bad conf, a malformed Variable, a service that cannot start, a missing frozen image:
a retry cannot fix any of them, so they fail the task at once with the message the
user needs (the file or setting, what is wrong, the fix), not a traceback.
"""

from __future__ import annotations

from ..core.errors import OrchestError


def user_error(problem: OrchestError | str) -> Exception:
    """An ``AirflowFailException`` with one line per problem (no retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    if isinstance(problem, OrchestError):
        problem = "\n".join(str(p) for p in problem.problems)
    return AirflowFailException(problem)
