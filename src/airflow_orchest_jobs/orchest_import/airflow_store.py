"""Airflow Variables, Connections and ``[orchest_jobs]`` settings, read and written
through Airflow's own models (so secrets backends and Fernet encryption apply)."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import re
from pathlib import Path

from ..core.importer.webhooks import ConnectionSpec
from ..core.settings import SECTION


class AirflowStore:
    def variable(self, name: str) -> str | None:
        from airflow.models import Variable

        value = Variable.get(name, default_var=None)
        return None if value is None else str(value)

    def set_variable(self, name: str, value: str) -> None:
        from airflow.models import Variable

        Variable.set(name, value, description="written by airflow-orchest-jobs import")

    def delete_variable(self, name: str) -> None:
        from airflow.models import Variable

        Variable.delete(name)

    def connection(self, conn_id: str) -> str | None:
        """The Connection in the shape of ``ConnectionSpec.canonical``, or None."""
        from airflow.models import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            conn = session.query(Connection).filter(Connection.conn_id == conn_id).first()
            if conn is None:
                return None
            try:
                extra = json.loads(conn.extra) if conn.extra else {}
            except ValueError:
                extra = conn.extra
            return json.dumps({"conn_type": conn.conn_type, "host": conn.host or "",
                               "password": conn.password or "", "extra": extra},
                              sort_keys=True)

    def set_connection(self, spec: ConnectionSpec) -> None:
        from airflow.models import Connection
        from airflow.utils.session import create_session

        with create_session() as session:
            conn = session.query(Connection).filter(
                Connection.conn_id == spec.conn_id).first()
            if conn is None:
                conn = Connection(conn_id=spec.conn_id)
                session.add(conn)
            conn.conn_type = spec.conn_type
            conn.host = spec.host
            conn.password = spec.password
            conn.extra = json.dumps(spec.extra)
            conn.description = "Orchest webhook, written by airflow-orchest-jobs import"

    def restore_connection(self, conn_id: str, canonical: str | None) -> None:
        from airflow.models import Connection
        from airflow.utils.session import create_session

        if canonical is None:
            with create_session() as session:
                session.query(Connection).filter(Connection.conn_id == conn_id).delete()
            return
        old = json.loads(canonical)
        extra = old["extra"]
        self.set_connection(ConnectionSpec(conn_id, old["host"], old["password"],
                                           extra if isinstance(extra, dict) else {},
                                           old["conn_type"]))

    def setting(self, key: str) -> str | None:
        """The value in force for the next component started: the environment's, else
        airflow.cfg's as it is now (this process may have read it before an import wrote
        it), else Airflow's configuration."""
        from_env = self.setting_from_environment(key)
        if from_env is not None:
            return from_env
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        with contextlib.suppress(OSError, configparser.Error):
            parser.read(self.config_file())
            if parser.has_option(SECTION, key):
                return parser.get(SECTION, key)
        from airflow.configuration import conf

        value = conf.get(SECTION, key, fallback=None)
        return None if value is None else str(value)

    def setting_from_environment(self, key: str) -> str | None:
        return os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")

    def config_file(self) -> Path:
        home = os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")
        return Path(os.environ.get("AIRFLOW_CONFIG") or os.path.join(home, "airflow.cfg"))

    def set_setting(self, key: str, value: str) -> Path:
        """Set ``[orchest_jobs] key = value`` in airflow.cfg, every other line kept."""
        path = self.config_file()
        text = path.read_text() if path.exists() else ""
        path.write_text(set_ini_option(text, SECTION, key, value))
        return path


def set_ini_option(text: str, section: str, key: str, value: str) -> str:
    """``text`` with ``key = value`` in ``[section]``: the line replaced if present, else
    added after the section's header (the section appended if missing)."""
    lines = text.splitlines(keepends=True)
    header = re.compile(r"^\s*\[([^\]]+)\]\s*$")
    option = re.compile(rf"^\s*{re.escape(key)}\s*[=:]")
    start = None
    for i, line in enumerate(lines):
        found = header.match(line)
        if found and found.group(1).strip() == section:
            start = i
            continue
        if start is not None:
            if found:
                break
            if option.match(line):
                lines[i] = f"{key} = {value}\n"
                return "".join(lines)
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join(lines) + f"\n[{section}]\n{key} = {value}\n"
    lines.insert(start + 1, f"{key} = {value}\n")
    return "".join(lines)
