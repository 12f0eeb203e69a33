"""Which imported jobs' environments have no image on this machine's Docker engine.

Orchest's images stayed in Orchest's registry: after an import they are built here
(``environments build``) or mapped (``environment_images``). A note per job and
environment says which, before anything runs and fails at its ``snapshot`` task.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.importer.plan import ImportPlan
from ..core.project import project_uuid
from ..engine.images import DockerUnavailable, docker_client, environment_ref


def missing_image_notes(plan: ImportPlan, docker_url: str,
                        environment_images: Mapping[str, str]) -> list[str]:
    wanted = [(project, job, env) for project in plan.projects for job in project.jobs
              for env in job.environments]
    if not wanted:
        return []
    try:
        client = docker_client(docker_url)
    except DockerUnavailable as exc:
        return [f"environment images not checked: {exc}"]
    import docker.errors

    found: dict[str, bool] = {}
    notes = []
    for project, job, env in wanted:
        ref = env[len("image:"):] if env.startswith("image:") else environment_ref(
            env, project_uuid(project.folder), environment_images)
        if ref not in found:
            try:
                client.images.get(ref)
                found[ref] = True
            except docker.errors.ImageNotFound:
                found[ref] = False
            except docker.errors.APIError:
                found[ref] = True  # not ours to judge: the snapshot task will say
        if not found[ref]:
            notes.append(f"project {project.folder}: job {job.name!r}: environment {env} has "
                         f"no image on this Docker engine (looked for {ref}); build it with "
                         f"`airflow-orchest-jobs environments build PROJECTS_DIR/"
                         f"{project.folder}` or map it in [orchest_jobs] environment_images")
    return notes
