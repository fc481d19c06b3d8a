"""``ca-admin``, the operator's command line: officers, the audit log and the database.

It lives outside ``db`` so that the database package keeps only what the gateway needs of it:
the ceremony journal and the audit key's location are the command line's business alone.
``cli`` parses and dispatches; ``officers``, ``audit`` and ``database`` hold the verbs.
"""
