"""Plain SQL in small typed functions; each takes a connection, the caller owns the
transaction."""
