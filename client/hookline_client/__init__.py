"""Publish events to Hookline from Python (CONTRACT section 6).

```python
async with AsyncNotifier("amqp://guest:guest@127.0.0.1:5672/") as n:
    key = await n.notify("invoice.paid", {"invoice_id": "in_1"}, id="in_1-paid")
```

`Notifier` is the same for synchronous code. The `outbox` extra adds a transactional outbox
for Postgres producers (`hookline_client.outbox`, the `hookline-outbox` command).
"""

from hookline_client.envelope import MAX_PAYLOAD_BYTES, Event
from hookline_client.errors import PublishError
from hookline_client.notifier import AsyncNotifier
from hookline_client.sync import Notifier

__all__ = ["MAX_PAYLOAD_BYTES", "AsyncNotifier", "Event", "Notifier", "PublishError"]
__version__ = "0.1.0"
