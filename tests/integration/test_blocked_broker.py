"""A broker that blocks publishes (memory alarm) on a private node: the API answers 503 with
Retry-After instead of waiting out a confirm, ingest stays ready, and once the alarm clears
everything flows again."""

from __future__ import annotations

import time

from pydantic import SecretStr

from shared.settings import Settings
from tests.support.pipeline import running_pipeline
from tests.support.private_rabbitmq import private_node

EVENT = {"type": "test.fault", "data": {"marker": "during"}}


async def test_a_memory_alarm_answers_503_at_once_and_loses_nothing(settings: Settings) -> None:
    async with private_node() as node:
        settings = settings.model_copy(update={"amqp_url": SecretStr(node.url)})
        async with running_pipeline(settings, broker_url=node.url) as pipeline:
            await pipeline.subscribe()
            await pipeline.publish("before")
            await pipeline.delivered("before")

            await node.alarm()
            answers = []
            for _ in range(3):
                started = time.monotonic()
                url = f"http://127.0.0.1:{settings.api_port}/v1/events"
                async with pipeline.http.post(
                    url, json=EVENT, headers={"Authorization": _auth()}
                ) as resp:
                    answers.append(
                        (resp.status, resp.headers.get("Retry-After"), time.monotonic() - started)
                    )
            print("answers during the alarm (status, Retry-After, seconds):", answers)
            assert [(status, retry) for status, retry, _ in answers[1:]] == [(503, "1")] * 2
            # Paused by an alarm is not "not ready": ingest must stay in its Service.
            assert await pipeline.ready()

            await node.clear_alarm()

            async def accepted() -> bool:
                status, _ = await pipeline.api("POST", "/v1/events", EVENT)
                return status == 202

            await pipeline.until(accepted, "POST /v1/events accepted after the alarm")
            await pipeline.publish("after")
            await pipeline.delivered("during")
            await pipeline.delivered("after")
            assert pipeline.count("before") == 1


def _auth() -> str:
    from tests.support.pipeline import AUTH

    return AUTH["Authorization"]
