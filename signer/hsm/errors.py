"""Translate PKCS#11 exceptions into the project's error kinds.

Faults are sorted into two classes. A *token fault* (device gone, session lost, module
uninitialised, p11-kit server vanished) means the session and possibly the whole module context
are unusable: the worker throws the session away and heals. Anything else is a problem with one
operation and the session stays.
"""

from __future__ import annotations

import pkcs11.exceptions as p11e

from signer.errors import ErrorKind, SignerError, describe

__all__ = ["TOKEN_FAULTS", "TokenFault", "describe", "is_token_fault", "token_fault"]

# Return codes after which the session (and maybe the module) cannot be trusted any more.
TOKEN_FAULTS: tuple[type[BaseException], ...] = (
    p11e.DeviceError,
    p11e.DeviceMemory,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.TokenNotRecognised,
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
    p11e.SessionCount,
    p11e.UserNotLoggedIn,
    p11e.GeneralError,
    p11e.FunctionFailed,
    p11e.HostMemory,
    p11e.OperationActive,
    p11e.OperationNotInitialized,
    p11e.NoSuchToken,
    p11e.SlotIDInvalid,
    p11e.ObjectHandleInvalid,
    p11e.KeyHandleInvalid,
)


class TokenFault(SignerError):
    """The token or its session failed; the caller must re-open before trying again."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(ErrorKind.TOKEN_UNAVAILABLE, message)
        self.cause = cause


def is_token_fault(exc: BaseException) -> bool:
    if isinstance(exc, TOKEN_FAULTS):
        return True
    # python-pkcs11 raises the base class for codes it has no class for (for example
    # CKR_CRYPTOKI_NOT_INITIALIZED after p11-kit's server went away).
    return type(exc) is p11e.PKCS11Error


def token_fault(exc: BaseException, doing: str) -> TokenFault | None:
    """The ``TokenFault`` that ``exc`` stands for, or None when it is a problem with one
    operation (the session stays). Every site that catches PKCS#11 errors asks this one
    question, so a fault is classified the same way everywhere and the worker heals."""
    if isinstance(exc, TokenFault):
        return exc
    if is_token_fault(exc):
        return TokenFault(f"{doing}: {describe(exc)}", exc)
    return None
