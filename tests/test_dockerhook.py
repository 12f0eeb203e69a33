"""The one Docker client factory's configuration, without an engine: what the Docker
Connection and the ``[orchest_jobs]`` TLS settings turn into, and each mistake as one
message naming the setting (the engine itself: tests/airflow/test_docker_tls.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_orchest_jobs.core.errors import OrchestError
from airflow_orchest_jobs.core.settings import Settings
from airflow_orchest_jobs.engine.clients import DockerUnavailable
from airflow_orchest_jobs.operators.dockerhook import engine_access, registry_auth


def _files(tmp_path: Path) -> dict[str, str]:
    names = {"tls_ca_cert": "ca.pem", "tls_client_cert": "cert.pem", "tls_client_key": "key.pem"}
    for name in names.values():
        (tmp_path / name).write_text("PEM\n")
    return {key: str(tmp_path / name) for key, name in names.items()}


def _connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "docker",
                                                                       **fields}))


def test_tls_settings_are_all_three_or_none(tmp_path: Path) -> None:
    with pytest.raises(OrchestError, match=r"tls_client_cert.*needs all three"):
        Settings.from_mapping({"tls_ca_cert": "/x/ca.pem", "tls_client_key": "/x/key.pem"})
    settings = Settings.from_mapping(_files(tmp_path))
    tls = engine_access(settings).tls
    assert not isinstance(tls, bool) and tls.ca_cert == str(tmp_path / "ca.pem")
    assert tls.cert == (str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    assert engine_access(Settings.from_mapping({})).tls is False


def test_a_missing_tls_file_names_the_setting(tmp_path: Path) -> None:
    files = _files(tmp_path)
    (tmp_path / "key.pem").unlink()
    with pytest.raises(DockerUnavailable, match=r"tls_client_key: no file .*key.pem"):
        engine_access(Settings.from_mapping(files))


def test_the_connection_carries_tls_files_and_the_registry_login(tmp_path: Path,
                                                                 monkeypatch) -> None:
    _connection(monkeypatch, "engine_tls", extra=_files(tmp_path))
    access = engine_access(Settings.from_mapping({"docker_conn_id": "engine_tls"}))
    assert not isinstance(access.tls, bool)
    assert access.login_conn_id is None  # no host: no registry to log in to
    _connection(monkeypatch, "engine_reg", host="reg.example.com", port=5000, login="robot",
                password="s3cret")
    settings = Settings.from_mapping({"docker_conn_id": "engine_reg",
                                      "registry": "reg.example.com:5000/team"})
    access = engine_access(settings)
    assert (access.login_conn_id, access.registry) == ("engine_reg", "reg.example.com:5000")
    assert registry_auth(settings) == ("robot", "s3cret")
    # Another registry than the Connection's: its login is not sent there.
    assert registry_auth(settings, "other.example.com") is None


def test_a_missing_connection_is_one_message_naming_the_setting(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_ENGINE", raising=False)
    with pytest.raises(DockerUnavailable, match=r"docker_conn_id: cannot read the "
                                                r"Connection 'no_such_engine'"):
        engine_access(Settings.from_mapping({"docker_conn_id": "no_such_engine"}))
