"""The messages the services pass each other over RabbitMQ, and the one path that publishes them.

    messages.py    format 1, one per message: `EventMessage`, `DeliveryMessage` (one
                   delivery, or one event's first attempts), every header name, reading back
    batches.py     format 2: many events or many deliveries in one message
    properties.py  the AMQP properties of every message Hookline publishes, both formats
    publish.py     the publish path: `publish_burst` (hot paths), `publish_confirmed`;
                   every publish mandatory and awaited until the broker confirms it

What goes where (every message persistent), and the builder of its properties:

- ingest -> `{ns}.events`, routing key = event type: one event, its body the webhook body
  (`event_properties`); in format 2, routing key `hookline.batch` (`events_properties`).
- fanout -> `{ns}.deliveries`: one event's first attempts, header `x-hookline-subscriptions`
  listing the subscriptions (`event_deliveries_properties`), or one first attempt
  (`first_attempt_properties`; to a retry queue instead when its target is parked); in
  format 2, many events' first attempts (`deliveries_properties`).
- sender -> `{ns}.retry.<delay>` (`x-hookline-deferrals` when deferred), the work queue (split
  off a batch; the overdue sweep), `{ns}.dead` (ids as headers too, `x-hookline-error`): one
  delivery (`delivery_properties`).
- API, `hookline dead redrive` -> `{ns}.deliveries`: one delivery (`delivery_json_message`).
- ingest, fanout -> `{ns}.ingest.rejected`, `{ns}.fanout.rejected`: the message as it came,
  plus `x-hookline-error` (and ingest's `x-hookline-reason`) (`rejected_copy`,
  `event_json_message`).

A delivery's ids travel in basic properties (message_id = delivery id, correlation_id = event
id, type = event type, app_id = subscription id); its header table holds only
`x-hookline-attempt` and `x-hookline-accepted-at`, which keeps fanout and the sender fast.

Rolling upgrades: every version reads both formats. Producers publish format 2 only when
`HOOKLINE_BATCH_MESSAGES` is on, which an operator turns on once every consumer runs a version
that reads it (docs/upgrading.md); a consumer that finds a format 2 message it cannot read
rejects it with a reason, as any malformed one.
"""
