"""`payment-window windows`, `audit` and `buyers`: the real CLI in a child process."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from api_harness import Api, api_settings, running_api
from conftest import settings_env
from devstripe.testing import RunningStripe
from seeding import seed_windows

from payment_window.config import Settings

WINDOW_HEADER = [
    "ID",
    "AUCTION",
    "MAKER",
    "STATUS",
    "DEADLINE",
    "TIME LEFT",
    "ATTEMPTS",
    "ACCOUNT",
]


@pytest.fixture
async def api(pg_settings: Settings, stripe: RunningStripe) -> AsyncIterator[Api]:
    async with running_api(api_settings(pg_settings, stripe)) as running:
        yield running


async def _cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {**settings_env(settings), "TZ": "Europe/Berlin"}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "payment_window",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode is not None
    return child.returncode, out.decode(), err.decode()


def _columns(line: str, header: str) -> list[str]:
    """Cut a row at the header's column starts (the table is aligned, cells may hold spaces)."""
    starts = [header.index(name) for name in WINDOW_HEADER]
    ends = [*starts[1:], None]
    return [line[start:end].strip() for start, end in zip(starts, ends, strict=True)]


async def test_windows_overdue_prints_an_aligned_table(
    api: Api, pg_settings: Settings, stripe: RunningStripe
) -> None:
    now = datetime.now(UTC)
    await api.open_window(makerId="mk-later", windowMinutes=125)
    overdue = await seed_windows(
        api.container,
        stripe,
        2,
        deadline=now - timedelta(minutes=13),
        spread=timedelta(minutes=1),
        maker_id="mk-late",
    )
    async with api.container.uow() as uow:
        await uow.sessions.record_expiry_failure(overdue[0].id, "Stripe: 500")
        await uow.commit()

    code, out, err = await _cli(pg_settings, "windows", "--overdue")

    assert code == 0, err
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == " ".join(WINDOW_HEADER).split()
    rows = [_columns(line, header) for line in lines[1:3]]
    assert [row[0] for row in rows] == [s.id for s in overdue]
    for row, session in zip(rows, overdue, strict=True):
        assert row[1] == session.auction_id and row[2] == "mk-late" and row[3] == "open"
        # Local time in the operator's zone (TZ=Europe/Berlin): CET or CEST.
        local = session.expires_at.astimezone(ZoneInfo("Europe/Berlin"))
        assert row[4] == local.strftime("%a %d %b %H:%M %Z")
        late = (datetime.now(UTC) - session.expires_at).total_seconds() // 60
        assert row[5] in (f"overdue {late:.0f} min", f"overdue {late - 1:.0f} min"), row[5]
    assert [row[6] for row in rows] == ["1", "0"]
    assert [row[7] for row in rows] == ["platform", "platform"]
    assert lines[3] == "" and lines[4] == "2 window(s)"
    # Every row starts its columns where the header does.
    for line in lines[1:3]:
        for name in WINDOW_HEADER[1:]:
            at = header.index(name)
            assert line[at - 2 : at] == "  " and line[at] != " "


async def test_windows_due_within_and_time_left(api: Api, pg_settings: Settings) -> None:
    soon = await api.open_window(makerId="mk-a", windowMinutes=125)
    await api.open_window(makerId="mk-b", windowMinutes=600)

    code, out, err = await _cli(pg_settings, "windows", "--due-within", "3h")

    assert code == 0, err
    lines = out.splitlines()
    row = _columns(lines[1], lines[0])
    assert row[0] == soon["sessionId"]
    assert re.fullmatch(r"2 h 0[45] min", row[5]), row[5]
    assert lines[3] == "1 window(s)"

    code, out, _ = await _cli(pg_settings, "windows", "--limit", "1")
    assert code == 0
    assert out.splitlines()[-1] == "1 window(s); more with --limit 2"

    code, _, err = await _cli(pg_settings, "windows", "--overdue", "--due-within", "1h")
    assert code == 2 and "not both" in err


async def test_audit_prints_the_trail(api: Api, pg_settings: Settings) -> None:
    opened = await api.open_window()
    sid = opened["sessionId"]
    extend = {"action": "extend", "minutes": 45, "reason": "bank holiday"}
    response = await api.client.post(
        f"/payments/window/{sid}/override", json=extend, headers=api.admin
    )
    assert response.status_code == 200

    code, out, err = await _cli(pg_settings, "audit", sid)

    assert code == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["TIME", "ACTION", "ACTOR", "STATUS", "DETAILS"]
    assert len(rows) == 2
    assert rows[0].split()[5:8] == ["payment_window_opened", "service:marketplace", "-→open"]
    assert rows[1].split()[5:8] == ["payment_window_extended", "admin:admin-1", "open→open"]
    assert 'minutes=45 reason="bank holiday"' in rows[1]
    assert "role=admin" in rows[1]

    code, out, err = await _cli(pg_settings, "audit", "pw_missing")
    assert code == 1 and "no payment session pw_missing" in err


async def _close_unpaid(api: Api, buyer_id: str, count: int, *, still_open: int = 0) -> str:
    """`count` windows an admin terminates, then `still_open` more; the last terminated id."""
    last = ""
    for _ in range(count):
        last = (await api.open_window(buyerId=buyer_id))["sessionId"]
        response = await api.client.post(
            f"/payments/window/{last}/override",
            json={"action": "terminate", "reason": "no answer"},
            headers=api.admin,
        )
        assert response.status_code == 200, response.text
    for _ in range(still_open):
        await api.open_window(buyerId=buyer_id)
    return last


async def test_buyers_repeat_prints_the_repeat_non_payers(api: Api, pg_settings: Settings) -> None:
    await _close_unpaid(api, "by-often", 3, still_open=1)
    await _close_unpaid(api, "by-twice", 2)
    await api.open_window(buyerId="by-fine")

    code, out, err = await _cli(pg_settings, "buyers", "--repeat")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["BUYER", "UNPAID", "OPENED", "UNPAID", "SHARE"]
    assert [line.split() for line in lines[1:3]] == [
        ["by-often", "3", "4", "75%"],
        ["by-twice", "2", "2", "100%"],
    ]
    assert lines[3:] == ["", "windows opened in the last 90 days; top 2 by unpaid"]

    code, out, err = await _cli(pg_settings, "buyers", "--repeat", "--days", "3650")
    assert code == 0 and "last 3650 days" in out
    code, _, err = await _cli(pg_settings, "buyers", "--repeat", "--days", "0")
    assert code == 2 and "--days" in err
    code, _, err = await _cli(pg_settings, "buyers")
    assert code == 2 and "BUYER_ID or --repeat" in err


async def test_buyers_id_prints_one_buyers_record(api: Api, pg_settings: Settings) -> None:
    last = await _close_unpaid(api, "by-often", 2, still_open=1)

    code, out, err = await _cli(pg_settings, "buyers", "by-often")

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("by-often: 2 of 3 windows unpaid in 90 days (opened since ")
    assert [line.split() for line in lines[2:7]] == [
        ["OUTCOME", "WINDOWS"],
        ["paid", "0"],
        ["still", "running", "1"],
        ["closed", "unpaid", "2"],
        ["admin", "terminated", "2"],
    ]
    assert lines[-1].startswith(f"last unpaid: {last}  auction auc-")
    assert lines[-1].endswith("(admin terminated)")

    code, out, err = await _cli(pg_settings, "buyers", "by-nobody")
    assert code == 0, err
    assert out.splitlines()[0].startswith("by-nobody: 0 of 0 windows unpaid in 90 days")
    assert "last unpaid" not in out
