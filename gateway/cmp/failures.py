"""The one error of the CMP server: a PKIFailureInfo bit and a text, answered as a CMP error
message (never an HTTP error)."""

from __future__ import annotations

from typing import Any

from pyasn1_alt_modules import rfc9480

FAILURE_BITS = frozenset(name for name, _ in rfc9480.PKIFailureInfo.namedValues.items())


class CmpFailure(Exception):
    """``info`` is a PKIFailureInfo bit name (``badPOP``, ``badMessageCheck`` ...); ``request``
    the decoded request when the header could be read (the answer then echoes its
    transactionID and nonce)."""

    def __init__(self, info: str, text: str, request: Any = None) -> None:
        assert info in FAILURE_BITS, info
        super().__init__(text)
        self.info = info
        self.text = text
        self.request = request
