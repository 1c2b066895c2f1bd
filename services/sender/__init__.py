"""The sender: POSTs each delivery, signed, and retries, dead-letters or records it."""
