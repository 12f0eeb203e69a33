"""Airflow's public REST API (``/api/v2``), called from the plugin's app as the user.

The view forwards the JWT the user's own request carried (its ``Authorization: Bearer``
header, else Airflow's ``_token`` cookie: the order Airflow's ``get_user`` follows), so
Airflow checks that user's permissions and writes its own audit log entry under that
user. The api-server calls itself at ``[api] base_url`` (it must reach that address;
the request's own address when unset). The calling routes are sync, so FastAPI runs
them in its threadpool while the event loop serves the inner request: an async route
waiting on it would deadlock a one-worker api-server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import api_base_url

#: Seconds for one call (a clear of a few thousand task instances takes seconds).
TIMEOUT = 120.0


class ApiError(Exception):
    """Airflow answered an error (its status and detail), or could not be reached (502)."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def request_token(authorization: str | None, cookie: str | None) -> str:
    """The JWT a request authenticated with: a bearer header wins over the cookie."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return cookie or ""


@dataclass(frozen=True)
class AirflowApi:
    """Calls to ``{root}/api/v2`` with one user's token."""

    root: str  #: Airflow's URL, without a trailing slash
    token: str

    @classmethod
    def for_request(cls, request: Any) -> AirflowApi:
        """As the user of a plugin request (a Starlette ``Request``)."""
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

        root = api_base_url().rstrip("/") or f"{request.url.scheme}://{request.url.netloc}"
        return cls(root, request_token(request.headers.get("authorization"),
                                       request.cookies.get(COOKIE_NAME_JWT_TOKEN)))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One call; the JSON answer, or :class:`ApiError` with Airflow's status."""
        import requests

        url = f"{self.root}/api/v2{path}"
        try:
            response = requests.request(method, url, json=body, timeout=TIMEOUT,
                                        headers={"Authorization": f"Bearer {self.token}"})
        except requests.RequestException as error:
            raise ApiError(502, f"the api-server could not reach Airflow's REST API at "
                                f"{self.root} (set [api] base_url to an address it can "
                                f"reach): {type(error).__name__}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text[:1000]
            raise ApiError(response.status_code, detail)
        return response.json()
