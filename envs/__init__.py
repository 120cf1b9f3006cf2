"""Built-in suites: one folder of YAML scenario templates per suite."""

from __future__ import annotations

from pathlib import Path

from mosaic_gym.scenarios.suite import SUITES, Suite

_HERE = Path(__file__).parent

# Into the core's table of suites by name, which ToolEnv("files") reads.
SUITES.update(
    (suite.name, suite)
    for suite in (
        Suite("files", ("files",), _HERE / "files", "a personal file system with a trash"),
        Suite("email", ("mail",), _HERE / "email", "a mailbox with contacts, drafts and sending"),
        Suite("payments", ("bank",), _HERE / "payments", "bank accounts, payees and scheduled payments"),
        Suite("web", ("web", "files"), _HERE / "web", "browsing, search, forms and downloads"),
        Suite("workspace", ("files", "mail", "bank", "web"), _HERE / "workspace", "all four services"),
    )
)

ENV_IDS: dict[str, str] = {
    "files": "mosaic_gym/Files-v0",
    "email": "mosaic_gym/Email-v0",
    "payments": "mosaic_gym/Payments-v0",
    "web": "mosaic_gym/Web-v0",
    "workspace": "mosaic_gym/Workspace-v0",
}

SUITE_OF: dict[str, str] = {env_id: suite for suite, env_id in ENV_IDS.items()}

__all__ = ["ENV_IDS", "SUITES", "SUITE_OF"]
