"""What an operator sees: metrics, gauges, health, parking, records, logs, redaction, Sentry."""
