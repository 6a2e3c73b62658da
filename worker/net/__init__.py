"""Where a token may go: address rules, endpoint checks, the guarded connection."""
