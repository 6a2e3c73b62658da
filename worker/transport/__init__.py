"""Celery and the brokers: the app, broker configuration, the reliable fetch, Sentinel."""
