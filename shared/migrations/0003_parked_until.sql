-- Until when a subscription's new deliveries skip the sender's work queue (issue 6). The
-- sender sets it, rarely, when the target has been hanging for several delivery timeouts;
-- fanout then publishes the subscription's deliveries straight into a retry queue, so a
-- stuck target no longer costs every other subscription a pass through the sender per
-- delivery. NULL or past: not parked.
ALTER TABLE subscriptions ADD COLUMN parked_until timestamptz;
