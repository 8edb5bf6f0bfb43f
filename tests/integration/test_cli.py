"""The `pbx-cdr` command as operators run it: real processes, real exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, select, update

from pbx_cdr.db.tables import accounts, call_hour_counts, call_number_counts
from tests.api.calls_support import assert_counts_exact
from tests.servers import pbx_cdr_command


def run(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PBX_CDR_DATA_DIR": str(data_dir)}
    env.pop("PBX_CDR_DATABASE_URL", None)
    result = subprocess.run(pbx_cdr_command(*args), env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_accounts_and_tokens_round_trip(tmp_path: Path) -> None:
    assert "revision" in run(tmp_path, "migrate").stdout
    created = json.loads(
        run(
            tmp_path,
            "accounts",
            "create",
            "Acme",
            "--timezone",
            "Asia/Ho_Chi_Minh",
            "--country",
            "vn",
            "--max-window-days",
            "60",
            "--recording-url-ttl",
            "600",
            "--json",
        ).stdout
    )
    assert set(created) == {"id", "name"} and created["name"] == "Acme"
    account_id = str(created["id"])
    [listed] = json.loads(run(tmp_path, "accounts", "list", "--json").stdout)
    assert listed["timezone"] == "Asia/Ho_Chi_Minh" and listed["country"] == "VN"
    assert listed["max_window_days"] == 60 and listed["recording_url_ttl"] == 600
    updated = json.loads(
        run(tmp_path, "accounts", "update", account_id, "--timezone", "UTC", "--json").stdout
    )
    assert updated["timezone"] == "UTC"

    token = json.loads(
        run(
            tmp_path,
            "tokens",
            "create",
            account_id,
            "--scope",
            "cdr:read",
            "--scope",
            "cdr:write",
            "--name",
            "crm",
            "--json",
        ).stdout
    )
    assert set(token) == {"id", "token"} and token["token"].startswith("pbx_")
    table = run(tmp_path, "tokens", "list", account_id).stdout
    assert "crm" in table and token["token"] not in table
    assert "revoked" in run(tmp_path, "tokens", "revoke", str(token["id"])).stdout
    assert "already" in run(tmp_path, "tokens", "revoke", str(token["id"])).stdout


def test_the_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    run(tmp_path, "migrate")
    key_file = tmp_path / "secret_key"
    first = key_file.read_text()
    assert len(first) == 64 and key_file.stat().st_mode & 0o777 == 0o600
    run(tmp_path, "migrate")
    assert key_file.read_text() == first


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("accounts", "create", "X", "--timezone", "Mars/Olympus"), "unknown timezone"),
        (("accounts", "create", "X", "--country", "ZZ"), "unknown country"),
        (("accounts", "create", "X", "--recording-url-ttl", "999999999"), "--recording-url-ttl"),
        (("accounts", "create", "X", "--max-window-days", "0"), "--max-window-days"),
        (("accounts", "create", "X", "--rate-limit", "-1"), "--rate-limit"),
        (("accounts", "update", "404", "--timezone", "UTC"), "no account with id 404"),
        (("tokens", "create", "404", "--scope", "cdr:read"), "no account with id 404"),
        (("tokens", "create", "1", "--scope", "cdr:admin"), "unknown scope"),
        (("tokens", "create", "1"), "--scope"),
        (("tokens", "revoke", "404"), "no token with id 404"),
        (("tokens", "list", "abc"), "abc"),
        (("nonsense",), "nonsense"),
    ],
)
def test_bad_input_is_one_line_on_stderr_without_traceback(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    run(tmp_path, "accounts", "create", "First")
    result = run(tmp_path, *args, check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_a_bad_environment_setting_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PBX_CDR_DATA_DIR": str(tmp_path), "PBX_CDR_DEFAULT_TIMEZONE": "Nowhere/Land"}
    result = subprocess.run(pbx_cdr_command("migrate"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr and "timezone" in result.stderr


def test_demo_loads_realistic_calls(tmp_path: Path) -> None:
    out = run(tmp_path, "demo", "--no-serve", "--calls", "5000").stdout
    assert "read token: pbx_" in out and "curl -s -H 'Authorization: Bearer pbx_" in out
    again = run(tmp_path, "demo", "--no-serve", "--calls", "5000").stdout
    assert ": 0 new calls" in again  # a second run reuses the account and its calls


def test_recount_repairs_the_counts_of_every_account(tmp_path: Path) -> None:
    """Counts that drifted (written around the service, or by an older release during an upgrade)
    are counted again from the calls, for the named accounts or for all."""
    run(tmp_path, "demo", "--no-serve", "--calls", "3000")
    engine = create_engine(f"sqlite:///{tmp_path / 'pbx-cdr.sqlite3'}")
    with engine.begin() as conn:
        [account_id] = conn.execute(select(accounts.c.id)).scalars()
        conn.execute(delete(call_number_counts))
        conn.execute(update(call_hour_counts).values(n=call_hour_counts.c.n + 1))
    with pytest.raises(AssertionError):
        assert_counts_exact(engine, account_id)
    out = run(tmp_path, "accounts", "recount").stdout
    assert out.startswith(f"account {account_id}: ") and " calls counted" in out
    assert_counts_exact(engine, account_id)
    assert run(tmp_path, "accounts", "recount", "999", check=False).returncode != 0
    engine.dispose()
