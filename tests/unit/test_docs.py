"""The docs stay complete: every command, setting and route is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click

from pbx_cdr.app import create_app
from pbx_cdr.cli import cli
from pbx_cdr.config import Settings, load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _commands(group: click.Group, prefix: str = "pbx-cdr") -> list[str]:
    out = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out.extend(_commands(command, path))
        else:
            out.append(path)
    return out


def test_every_command_is_in_cli_md() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = [c for c in _commands(cli) if c not in text]
    assert not missing, f"undocumented commands: {missing}"


def test_every_setting_is_in_configuration_md() -> None:
    text = (DOCS / "configuration.md").read_text()
    internal = {"host", "port"}  # set by `serve --host/--port`
    missing = [
        f"PBX_CDR_{name.upper()}"
        for name in Settings.model_fields
        if name not in internal and f"PBX_CDR_{name.upper()}" not in text
    ]
    assert not missing, f"undocumented settings: {missing}"


def test_every_route_is_in_api_md(tmp_path: Path) -> None:
    text = (DOCS / "api.md").read_text()
    app = create_app(load_settings(data_dir=tmp_path, secret_key="k"))
    routes = {re.sub(r"\{[^}]+\}", "{x}", path) for path in app.openapi()["paths"]}
    documented = {re.sub(r"\{[^}]+\}", "{x}", p) for p in re.findall(r"(/[a-z][\w/{}.-]*)", text)}
    missing = sorted(routes - documented)
    assert not missing, f"undocumented routes: {missing}"
