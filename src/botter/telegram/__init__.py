"""The outbound Bot API client layer: one client, pacing, typed errors."""
