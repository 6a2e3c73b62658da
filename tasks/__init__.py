"""Task entry points: thin, each reads like DESIGN.md's flow and calls into `worker`."""
