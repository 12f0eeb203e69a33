"""Read a JSON file or say, in one line, why it cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import OrchestError


def read_json(path: Path, what: str = "file") -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OrchestError.single(path, "", f"{what} not found") from None
    except IsADirectoryError:
        raise OrchestError.single(path, "", f"is a folder, expected a {what}") from None
    except PermissionError:
        raise OrchestError.single(path, "", "cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise OrchestError.single(path, "", "is not UTF-8 text; save it as UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise OrchestError.single(
            path, f"line {exc.lineno} column {exc.colno}",
            f"malformed JSON ({exc.msg}); fix the syntax",
        ) from None
