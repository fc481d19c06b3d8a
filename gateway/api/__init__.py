"""HTTP handlers: one RouteTableDef per module."""
