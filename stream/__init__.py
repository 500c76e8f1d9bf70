"""Customer Pulse: the domain (core), the churn model, I/O, sinks, infrastructure and the CLI."""
