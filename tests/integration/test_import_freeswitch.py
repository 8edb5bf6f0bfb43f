"""``pbx-cdr import freeswitch``, ``reprocess`` and ``agents``: the corpus replayed from disk.

The commands run in process (click's runner) against SQLite and PostgreSQL, and once as a real
``python -m pbx_cdr`` process.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from pbx_cdr.cli import cli
from pbx_cdr.cli.context import CliError
from pbx_cdr.config import Settings
from pbx_cdr.db import engine as db
from pbx_cdr.db.queries import calls as call_queries
from pbx_cdr.domain.call import api_item
from tests.conftest import SECRET, Tenant
from tests.fixtures.freeswitch.corpus import CALL_FIELDS, CASES
from tests.servers import pbx_cdr_command

NAMED = next(c for c in CASES if c.agents)
LEG_FILES = sum(len(c.legs) for c in CASES)


@pytest.fixture
def run(settings: Settings) -> Callable[..., Result]:
    def invoke(*args: str) -> Result:
        base = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
        return CliRunner().invoke(cli, [*base, *args], env={"PBX_CDR_SECRET_KEY": SECRET})

    return invoke


def call_of(engine: Engine, account_id: int, uuid: str) -> dict[str, Any] | None:
    with db.read(engine) as conn:
        row = call_queries.get_call(conn, account_id, uuid)
    return {f: api_item(row)[f] for f in CALL_FIELDS} if row else None


def corpus_copy(target: Path) -> Path:
    """The corpus laid out as an operator's folders: every case in its own sub-folder."""
    for case in CASES:
        folder = target / "json_cdr" / case.name
        folder.mkdir(parents=True)
        for path in case.legs:
            shutil.copy(path, folder / path.name)
        (folder / "case.json").write_text("{}")  # not a leg: never read
    return target / "json_cdr"


def test_import_the_whole_corpus_twice(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], engine: Engine, tmp_path: Path
) -> None:
    tenant = make_tenant()
    for name, extension in NAMED.agents.items():
        assert run("agents", "map", str(tenant.id), name, extension).exit_code == 0
    folder = corpus_copy(tmp_path)

    first = run("import", "freeswitch", str(folder), "--account", str(tenant.id), "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary == {
        "files": LEG_FILES,
        "legs": {"created": LEG_FILES, "updated": 0, "unchanged": 0},
        "calls": {"created": len(CASES), "updated": 0, "unchanged": 0, "pending": 0},
        "errors": [],
    }
    for case in CASES:
        assert call_of(engine, tenant.id, case.expected["uuid"]) == {f: case.expected[f] for f in CALL_FIELDS}

    again = run("import", "freeswitch", str(folder), "--account", str(tenant.id))
    assert again.exit_code == 0, again.output
    assert f"{LEG_FILES} files: 0 legs new, 0 replaced, {LEG_FILES} already there" in again.stdout
    assert f"calls: 0 created, 0 updated, {len(CASES)} unchanged, 0 waiting" in again.stdout


def test_err_log_dir_files_in_every_encoding(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], engine: Engine, tmp_path: Path
) -> None:
    """mod_json_cdr writes the encoded text it failed to post: URL-encoded or base64, no cdr=."""
    case = next(c for c in CASES if c.name == "blind_transfer")
    files = []
    for i, path in enumerate(case.legs):
        text = path.read_bytes().strip()
        body = [text, quote(text, safe="").encode(), base64.b64encode(text)][i % 3]
        target = tmp_path / path.name
        target.write_bytes(body + b"\n")
        files.append(str(target))
    tenant = make_tenant()
    result = run("import", "freeswitch", *files, "--account", str(tenant.id), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["calls"]["created"] == 1
    assert call_of(engine, tenant.id, case.expected["uuid"]) == {f: case.expected[f] for f in CALL_FIELDS}


def test_legs_without_their_a_leg_wait(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], engine: Engine
) -> None:
    case = next(c for c in CASES if c.name == "attended_transfer")
    others = [str(p) for p in case.legs if p != case.a_leg]
    tenant = make_tenant()
    result = run("import", "freeswitch", *others, "--account", str(tenant.id), "--json")
    assert json.loads(result.stdout)["calls"] == {"created": 0, "updated": 0, "unchanged": 0, "pending": 1}
    assert call_of(engine, tenant.id, case.expected["uuid"]) is None
    result = run("import", "freeswitch", str(case.a_leg), "--account", str(tenant.id), "--json")
    assert json.loads(result.stdout)["calls"]["created"] == 1
    assert call_of(engine, tenant.id, case.expected["uuid"]) == {f: case.expected[f] for f in CALL_FIELDS}


def test_a_bad_file_is_named_and_the_others_imported(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], engine: Engine, tmp_path: Path
) -> None:
    good = next(c for c in CASES if c.name == "ivr_only_local")
    shutil.copy(good.a_leg, tmp_path / good.a_leg.name)
    (tmp_path / "broken.cdr.json").write_text('{"variables": {"uuid": ')
    (tmp_path / "nouuid.cdr.json").write_text('{"variables": {"start_epoch": "1"}}')
    (tmp_path / "notes.txt").write_text("not a leg, not read")
    tenant = make_tenant()
    result = run("import", "freeswitch", str(tmp_path), "--account", str(tenant.id))
    assert result.exit_code == 1
    assert isinstance(result.exception, CliError)
    assert "2 of 3 files could not be imported" in str(result.exception)
    assert "broken.cdr.json: The leg is not valid JSON" in result.stderr
    assert "nouuid.cdr.json: variables.uuid: The leg has no uuid." in result.stderr
    assert call_of(engine, tenant.id, good.expected["uuid"]) is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["import", "freeswitch", "/no/such/folder", "--account", "{account}"], "no such file or folder"),
        (["import", "freeswitch", ".", "--account", "99999"], "no account with id 99999"),
        (["reprocess", "--since", "27/06/2026"], "--since must be a date"),
        (["agents", "map", "{account}", "alice", "10 01"], "is not an extension"),
        (["agents", "map", "{account}", "", "1001"], "an agent name must have"),
        (["agents", "unmap", "{account}", "nobody"], "is not mapped"),
        (["agents", "list", "99999"], "no account with id 99999"),
    ],
)
def test_operator_mistakes_are_one_line(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], args: list[str], says: str
) -> None:
    tenant = make_tenant()
    result = run(*[a.replace("{account}", str(tenant.id)) for a in args])
    assert result.exit_code == 1
    assert isinstance(result.exception, CliError)
    assert says in str(result.exception)


def test_reprocess_applies_a_new_agent_mapping(
    run: Callable[..., Result], make_tenant: Callable[..., Tenant], engine: Engine
) -> None:
    tenant = make_tenant()
    uuid = NAMED.expected["uuid"]
    run("import", "freeswitch", *map(str, NAMED.legs), "--account", str(tenant.id))
    assert call_of(engine, tenant.id, uuid)["agent_extension"] == "an.nguyen"  # type: ignore[index]

    mapped = run("agents", "map", str(tenant.id), "Nguyễn Văn An", "1003")
    assert mapped.exit_code == 0
    assert f"pbx-cdr reprocess --account {tenant.id}" in mapped.stdout
    assert call_of(engine, tenant.id, uuid)["agent_extension"] == "an.nguyen"  # type: ignore[index]

    nothing = run("reprocess", "--account", str(tenant.id), "--since", "2099-01-01", "--json")
    assert json.loads(nothing.stdout) == {"created": 0, "updated": 0, "unchanged": 0, "pending": 0}
    done = run("reprocess", "--account", str(tenant.id), "--json")
    assert json.loads(done.stdout) == {"created": 0, "updated": 1, "unchanged": 0, "pending": 0}
    assert call_of(engine, tenant.id, uuid) == {f: NAMED.expected[f] for f in CALL_FIELDS}
    assert "calls: 0 created, 0 updated, 1 unchanged" in run("reprocess").stdout  # every account


def test_agents_map_list_unmap(run: Callable[..., Result], make_tenant: Callable[..., Tenant]) -> None:
    tenant, other = make_tenant(), make_tenant()
    account = str(tenant.id)
    assert (
        "mapped agent 'alice@default' to extension 1001"
        in run("agents", "map", account, "alice@default", "1001").stdout
    )
    assert "already mapped" in run("agents", "map", account, "alice@default", "1001").stdout
    assert "re-mapped" in run("agents", "map", account, "alice@default", "1002").stdout
    run("agents", "map", account, "Nguyễn Văn An", "1003")
    listed = json.loads(run("agents", "list", account, "--json").stdout)
    assert listed == [
        {"agent_name": "Nguyễn Văn An", "extension": "1003"},
        {"agent_name": "alice@default", "extension": "1002"},
    ]
    assert json.loads(run("agents", "list", str(other.id), "--json").stdout) == []
    assert "alice@default" in run("agents", "list", account).stdout
    assert run("agents", "unmap", account, "alice@default").exit_code == 0
    assert [a["agent_name"] for a in json.loads(run("agents", "list", account, "--json").stdout)] == [
        "Nguyễn Văn An"
    ]


def test_the_installed_command(tmp_path: Path) -> None:
    env = {**os.environ, "PBX_CDR_DATA_DIR": str(tmp_path / "data")}
    env.pop("PBX_CDR_DATABASE_URL", None)

    def pbx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(pbx_cdr_command(*args), env=env, capture_output=True, text=True, timeout=120)

    account = json.loads(pbx("accounts", "create", "Acme", "--json").stdout)["id"]
    folder = corpus_copy(tmp_path / "logs")
    done = pbx("import", "freeswitch", str(folder), "--account", str(account), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["calls"]["created"] == len(CASES)
    refused = pbx("import", "freeswitch", str(tmp_path / "missing"), "--account", str(account))
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: no such file or folder: {tmp_path / 'missing'}"
