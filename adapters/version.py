"""The version of Flux Services, in one place.

It is read once from the installed distribution's metadata, so pyproject.toml stays the only
file a release edits; the CLI's `--version` and the server's `GET /health` both show it.
"""

from __future__ import annotations

import importlib.metadata

DISTRIBUTION = "flux-services"

VERSION: str = importlib.metadata.version(DISTRIBUTION)
