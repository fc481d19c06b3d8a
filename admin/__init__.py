"""``ca-admin``, the operator's command line (moved out of ``db``)."""
