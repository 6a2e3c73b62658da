"""Task entry points: thin, each reads like docs/design.md's flow and calls into `worker`."""
