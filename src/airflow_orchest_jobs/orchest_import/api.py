"""Read an Orchest installation over HTTP, as a browser would: the webserver's project
and pipeline lists, and the orchest-api behind its ``/catch/api-proxy`` (login cookie
or header when auth is on). The API never returns webhook URLs or secrets."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from ..core.errors import OrchestError
from ..core.importer.model import Installation, OrchestPipeline, OrchestProject
from .db import job_from_row

API_PREFIX = "/catch/api-proxy/api"


class OrchestApi:
    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None,
                 timeout: float = 30):
        self.base = base_url.rstrip("/")
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.timeout = timeout

    def get(self, path: str) -> Any:
        url = self.base + path
        request = urllib.request.Request(url, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            hint = (" (log in: pass --cookie or --header)" if exc.code in (401, 403) else "")
            raise OrchestError.single("--api", "", f"GET {url} answered {exc.code}{hint}"
                                      ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise OrchestError.single("--api", "", f"GET {url} failed ({reason}); give the "
                                      "address Orchest's web UI answers on") from None
        try:
            return json.loads(body)
        except ValueError:
            raise OrchestError.single("--api", "", f"GET {url} did not answer JSON (a login "
                                      "page? pass --cookie or --header)") from None


def read_api(base_url: str, headers: Mapping[str, str] | None = None) -> Installation:
    api = OrchestApi(base_url, headers)
    projects = []
    for row in api.get("/async/projects?skip_discovery=true"):
        detail = api.get(f"{API_PREFIX}/projects/{urllib.parse.quote(row['uuid'])}")
        projects.append(OrchestProject(uuid=row["uuid"], folder=row["path"],
                                       env_variables=detail.get("env_variables") or {}))
    pipelines = []
    for row in api.get("/async/pipelines").get("result", []):
        detail = api.get(f"{API_PREFIX}/pipelines/{urllib.parse.quote(row['project_uuid'])}/"
                         f"{urllib.parse.quote(row['uuid'])}")
        pipelines.append(OrchestPipeline(uuid=row["uuid"], project_uuid=row["project_uuid"],
                                         path=row["path"],
                                         env_variables=detail.get("env_variables") or {}))
    jobs = []
    for row in api.get(f"{API_PREFIX}/jobs/").get("jobs", []):
        # The list leaves env_variables null: the job's own answer has them.
        jobs.append(job_from_row(api.get(f"{API_PREFIX}/jobs/"
                                         f"{urllib.parse.quote(row['uuid'])}")))
    jobs.sort(key=lambda j: (j.created_time, j.uuid))
    settings = api.get(f"{API_PREFIX}/ctl/orchest-settings")
    return Installation(source="api", projects=projects, pipelines=pipelines, jobs=jobs,
                        webhooks=None, settings=dict(settings))
