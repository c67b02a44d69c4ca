"""Session state through the SDK against a real gateway: versions, conflicts, resuming by id."""

from __future__ import annotations

import uuid

import httpx
import pytest
from lockgate_sdk import GatewayApiError, StateConflict

from gateway.testing.server import GatewayServer
from tests.sdk.conftest import AGENT_KEY, OTHER_KEY, SdkFactory


def test_state_round_trip_and_resume_by_id(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as session:
        assert session.state.get("plan") is None
        session.state["plan"] = {"steps": ["search", "book"], "done": 0}
        session.state.set("cursor", 3)
        assert session.state["plan"]["steps"] == ["search", "book"]

    # Another agent process (a fresh SDK, nothing cached) picks the session up by its id.
    with sdk().session(id=session_id) as resumed:
        assert resumed.state.to_dict() == {"plan": {"steps": ["search", "book"], "done": 0}, "cursor": 3}
        assert resumed.state.version("cursor") > 0


def test_two_writers_conflict_and_nothing_is_lost(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as first, sdk().session(id=session_id) as second:
        first.state["counter"] = 1
        assert second.state["counter"] == 1  # both have now read version v1
        first.state["counter"] = 2
        with pytest.raises(StateConflict) as caught:
            second.state["counter"] = 100
        conflict = caught.value
        assert conflict.key == "counter"
        assert conflict.current_version == first.state.version("counter")
        assert conflict.expected_version < conflict.current_version
        assert "another writer" in conflict.message
        # The stale write did not land, and the loser still sees what it read.
        assert second.state["counter"] == 1
        second.state.refresh()
        assert second.state["counter"] == 2
        second.state["counter"] = 3
        first.state.refresh()
        assert first.state["counter"] == 3


def test_creating_a_key_that_another_writer_created_is_a_conflict(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as first, sdk().session(id=session_id) as second:
        assert first.state.get("owner") is None and second.state.get("owner") is None
        first.state["owner"] = "first"
        with pytest.raises(StateConflict):
            second.state["owner"] = "second"
        first.state.refresh()
        assert first.state["owner"] == "first"


def test_update_retries_on_conflict_so_increments_are_not_lost(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as first, sdk().session(id=session_id) as second:
        first.state.update("n", lambda n: n + 1, default=0)
        second.state.get("n")  # second's snapshot now holds n=1
        first.state.update("n", lambda n: n + 1, default=0)
        # second's snapshot is stale, but update() reads the latest before writing.
        assert second.state.update("n", lambda n: n + 1, default=0) == 3
        first.state.refresh()
        assert first.state["n"] == 3


def test_delete_and_recreate_never_reuses_a_version(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as first, sdk().session(id=session_id) as stale:
        first.state["k"] = "a"
        stale.state.refresh()
        del first.state["k"]
        first.state["k"] = "b"
        # `stale` still holds the first version of k: its write must not land on the new k.
        with pytest.raises(StateConflict):
            stale.state["k"] = "c"
        stale.state.refresh()
        assert stale.state["k"] == "b"


async def test_async_state(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    async with sdk().session(id=session_id) as session:
        assert await session.state.aget("x") is None
        await session.state.aset("x", [1, 2])
        assert await session.state.aupdate("x", lambda v: [*v, 3]) == [1, 2, 3]
    async with sdk().session(id=session_id) as other, sdk().session(id=session_id) as rival:
        assert await other.state.aget("x") == [1, 2, 3]
        await rival.state.aset("x", [])
        with pytest.raises(StateConflict):
            await other.state.aset("x", [9])
        await other.state.arefresh()
        assert await other.state.ato_dict() == {"x": []}
        await other.state.adelete("x")
        await rival.state.arefresh()
        assert await rival.state.ato_dict() == {}


def test_state_api_refuses_bad_input_in_openai_shape(fake_gateway: GatewayServer) -> None:
    headers = {"authorization": f"Bearer {AGENT_KEY}"}
    base = f"{fake_gateway.url}/v1/lockgate/sessions/s1/state"
    with httpx.Client(headers=headers) as client:
        no_version = client.put(f"{base}/k", json={"value": 1})
        assert no_version.status_code == 400
        assert no_version.json()["error"]["param"] == "version"
        assert client.put(f"{base}/k", json={"version": 0}).json()["error"]["param"] == "value"
        assert client.put(f"{base}/k", content=b"{nope").json()["error"]["code"] == "invalid_json"
        # Past what the stores hold, or digits int() refuses: 400s naming the param (they were 500s).
        assert client.put(f"{base}/k", json={"value": 1, "version": 2**63}).json()["error"]["param"] == "version"
        assert client.delete(f"{base}/k", params={"version": "²"}).json()["error"]["param"] == "version"
        unauthenticated = httpx.get(base)
        assert unauthenticated.status_code == 401
        conflict = client.put(f"{base}/k", json={"value": 1, "version": 7})
        assert conflict.status_code == 409
        assert conflict.headers["x-lockgate-state-version"] == "0"
        assert conflict.headers["x-should-retry"] == "false"
        assert conflict.json()["error"]["code"] == "state_conflict"


def test_sdk_error_for_a_bad_key(sdk: SdkFactory) -> None:
    with sdk(api_key="sk-wrong-key-000000000000").session() as session, pytest.raises(GatewayApiError) as caught:
        session.state.get("x")
    assert caught.value.status == 401
    assert "sk-wrong-key" not in str(caught.value)


def test_events_api_refuses_bad_events_naming_them(fake_gateway: GatewayServer) -> None:
    headers = {"authorization": f"Bearer {AGENT_KEY}"}
    url = f"{fake_gateway.url}/v1/lockgate/sessions/s-events/events"
    with httpx.Client(headers=headers) as client:
        assert client.post(url, json={"events": []}).json()["error"]["param"] == "events"
        wrong_type = client.post(url, json={"events": [{"type": "chat", "name": "x", "status": "ok"}]})
        assert wrong_type.status_code == 400 and "events[0].type" in wrong_type.json()["error"]["message"]
        for odd in ({"a": 1}, [1]):  # not text at all: was a 500 (an unhashable type)
            odd_type = client.post(url, json={"events": [{"type": odd, "name": "x", "status": "ok"}]})
            assert odd_type.status_code == 400 and "events[0].type" in odd_type.json()["error"]["message"]
        no_status = client.post(url, json={"events": [{"type": "tool_call", "name": "x"}, {"type": "tool_call"}]})
        assert "events[0].status" in no_status.json()["error"]["message"]
        too_big = {"type": "tool_call", "name": "x", "status": "ok", "result": "r" * 20000}
        assert client.post(url, json={"events": [too_big]}).status_code == 400
        # Nothing of a refused batch was kept.
        assert client.get(url).json()["data"] == []
        assert client.get(url, params={"limit": "0"}).json()["error"]["param"] == "limit"
        assert client.get(url, params={"limit": "²"}).json()["error"]["param"] == "limit"


def test_a_session_belongs_to_its_key_another_key_sees_nothing_of_it(sdk: SdkFactory) -> None:
    session_id = f"ses-{uuid.uuid4()}"
    with sdk().session(id=session_id) as mine:
        mine.state["secret_plan"] = "wire the money on friday"

    with sdk(api_key=OTHER_KEY).session(id=session_id) as theirs:
        assert theirs.state.to_dict() == {}, "another key must not read this session's state"
        theirs.state["secret_plan"] = "overwrite attempt"

    with sdk().session(id=session_id) as again:
        assert again.state["secret_plan"] == "wire the money on friday"
