"""The built-in operator page: live charts of the gateway's own metrics (RA officer login)."""
