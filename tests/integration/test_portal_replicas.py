"""Portal sessions across ingest replicas, and the events list an operator sees."""

from __future__ import annotations

from shared.settings import Settings
from tests.support import free_port
from tests.support.ingest import running_ingest


async def test_a_session_works_on_every_replica_and_its_revocation_too(
    settings: Settings,
) -> None:
    second = settings.model_copy(update={"api_port": free_port(), "metrics_port": free_port()})
    async with running_ingest(settings) as one, running_ingest(second) as two:
        status, session, _ = await one.call("POST", "/v1/portal-sessions", {"tenant_id": "acme"})
        assert status == 201
        auth = {"Authorization": f"Bearer {session['token']}"}
        for replica in (one, two):
            status, me, _ = await replica.call("GET", "/v1/whoami", auth=False, headers=auth)
            assert status == 200 and me["tenant_id"] == "acme"

        status, _, _ = await two.call("DELETE", f"/v1/portal-sessions/{session['id']}")
        assert status == 204
        for replica in (one, two):
            status, _, _ = await replica.call("GET", "/v1/whoami", auth=False, headers=auth)
            assert status == 401
        status, _, _ = await one.call("DELETE", f"/v1/portal-sessions/{session['id']}")
        assert status == 204, "revoking again is a no-op"


async def test_events_newest_first_filtered_and_paged(settings: Settings) -> None:
    async with running_ingest(settings) as api:
        published = []
        for event_type, tenant in [
            ("invoice.paid", "acme"),
            ("order.created", "acme"),
            ("invoice.paid", "globex"),
            ("invoice.paid", None),
        ]:
            body = {"type": event_type, "data": {}}
            if tenant:
                body["tenant_id"] = tenant
            status, event, _ = await api.call("POST", "/v1/events", body)
            assert status == 202
            published.append(event["id"])

        seen: list[str] = []
        cursor = ""
        while True:
            status, page, _ = await api.call("GET", f"/v1/events?limit=3{cursor}")
            assert status == 200, page
            seen.extend(e["id"] for e in page["data"])
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert seen == published[::-1]

        status, page, _ = await api.call("GET", "/v1/events?type=invoice.paid")
        assert [e["id"] for e in page["data"]] == [published[3], published[2], published[0]]
        status, page, _ = await api.call("GET", "/v1/events?tenant_id=acme")
        assert [e["id"] for e in page["data"]] == [published[1], published[0]]
        assert page["data"][0]["delivery_counts"] == {
            "pending": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
        }
        status, problem, _ = await api.call("GET", "/v1/events?cursor=bogus")
        assert status == 422 and problem["errors"][0]["field"] == "query.cursor"
