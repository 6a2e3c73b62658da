"""Where a token may go: `addresses` (which class an IP address is in), `trust` (the one answer
to "may this URL receive a token or a secret?"), `guard` (the connection that applies it)."""
