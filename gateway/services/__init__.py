"""Business logic between the HTTP handlers and the queries; transactions start here."""
