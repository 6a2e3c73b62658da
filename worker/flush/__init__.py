"""The flush: lease, call (direct or batch), settle through the one retry policy."""
