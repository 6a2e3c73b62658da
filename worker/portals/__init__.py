"""Portals: registration, tokens at rest, the fleet-wide refresh, who refreshes."""
