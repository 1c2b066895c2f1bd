"""Every consumer and publisher channel comes back after the broker drops it, by itself."""

from __future__ import annotations

import pytest

from shared.amqp import connection_name
from shared.settings import Settings
from tests.support import close_connections, make_settings
from tests.support.pipeline import CuttableProxy, Pipeline, running_pipeline
from tests.support.receiver import Received

CASES = {
    "ingest-consumer": ["ingest-consume"],
    "fanout-consumer": ["fanout-consume"],
    "sender-consumer": ["sender-consume"],
    "publishers": ["ingest", "fanout", "sender"],
}


def fail_first_try_of_retry_markers() -> object:
    seen: set[str] = set()

    def answer(request: Received) -> int:
        if b'"retry-' not in request.body or request.webhook_id in seen:
            return 200
        seen.add(request.webhook_id)
        return 500

    return answer


async def post_event(pipeline: Pipeline, marker: str) -> None:
    """POST an event as a client would: again after a 503 (Retry-After) until accepted."""

    async def accepted() -> bool:
        status, _ = await pipeline.api(
            "POST", "/v1/events", {"type": "test.fault", "data": {"marker": marker}}
        )
        assert status in (202, 503), status
        return status == 202

    await pipeline.until(accepted, f"POST /v1/events of {marker} accepted")


async def restores(pipeline: Pipeline, consumer: str) -> float:
    for line in (await pipeline.metrics()).splitlines():
        if line.startswith(f'hookline_consumer_restores_total{{consumer="{consumer}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("names", CASES.values(), ids=CASES.keys())
async def test_delivery_resumes_after_the_broker_closes_our_connections(
    settings: Settings, names: list[str]
) -> None:
    async with running_pipeline(settings) as pipeline:
        pipeline.receiver.script("/hook", fail_first_try_of_retry_markers())  # type: ignore[arg-type]
        await pipeline.subscribe()
        await pipeline.publish("before")
        await pipeline.delivered("before")

        wanted = {connection_name(settings, name) for name in names}
        assert sorted(await close_connections(wanted)) == sorted(wanted)

        for name in names:
            if name.endswith("-consume"):
                await pipeline.until(
                    lambda name=name: _restored(pipeline, name), f"{name} restored"
                )
        await pipeline.until(pipeline.ready, "ready again")
        await pipeline.publish("after-amqp")
        await post_event(pipeline, "after-http")
        # Its first attempt fails: the sender's retry goes out on its publisher channel.
        await pipeline.publish("retry-after")
        for marker in ("after-amqp", "after-http", "retry-after"):
            await pipeline.delivered(marker)
        # "before" may come twice (at least once: its ack may not have gone out when the
        # connection was closed); what came after the fault comes once.
        assert pipeline.count("after-amqp") == 1


async def _restored(pipeline: Pipeline, consumer: str) -> bool:
    return await restores(pipeline, consumer) >= 1


async def test_a_network_cut_makes_the_services_unready_then_unhealthy_until_it_heals(
    fresh_database: str,
) -> None:
    proxy = CuttableProxy()
    await proxy.start()
    settings = make_settings("t" + fresh_database[-12:], fresh_database, liveness_bound="1s")
    settings = settings.model_copy(update={"amqp_url": settings.amqp_url.__class__(proxy.url)})
    try:
        async with running_pipeline(settings) as pipeline:
            await pipeline.subscribe()
            await pipeline.publish("before")
            await pipeline.delivered("before")
            assert await pipeline.status("/healthz") == 200

            await proxy.cut()
            await pipeline.until(pipeline.not_ready, "not ready while the broker is cut off")
            await pipeline.until(
                lambda: _status_is(pipeline, "/healthz", 503), "unhealthy after the bound"
            )
            await pipeline.publish("during")  # straight to the broker: waits in its queue

            await proxy.start()
            await pipeline.until(pipeline.ready, "ready once the network is back")
            await pipeline.until(lambda: _status_is(pipeline, "/healthz", 200), "healthy again")
            await pipeline.publish("after")
            await pipeline.delivered("during")
            await pipeline.delivered("after")
    finally:
        await proxy.cut()
        from tests.support import delete_namespace

        await delete_namespace(settings.namespace, settings.retry_delays)


async def _status_is(pipeline: Pipeline, path: str, status: int) -> bool:
    return await pipeline.status(path) == status
