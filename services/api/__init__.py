"""The HTTP API of CONTRACT section 3: one module per resource, routes declared as data."""
