"""Customer Pulse's pure domain: the per-event fold, dedup, windows, preferences, RFM, tags
and rules, churn, validation, sweeps and the per-batch processor. No I/O here."""
