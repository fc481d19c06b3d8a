"""Which malloc the signing workers run with.

Every C_Sign makes SoftHSM allocate and free a handful of C++ objects (the key's attributes,
OpenSSL's key and big numbers), and every certificate makes cryptography's builder allocate its
encoding in between. With glibc's malloc the two interleave badly: measured in one process on
this project's 2-core machine (RSA-2048, 64-item batches), a worker spent 84 us per certificate
beyond its C_Sign time with glibc, 74 us with gperftools' tcmalloc, and C_Sign itself got
faster (534 -> 529 us; P-256 44 -> 41 us, a certificate 161 -> 147 us). jemalloc and mimalloc
came close; glibc's own tunables did not.

So the workers get tcmalloc (Debian's ``libtcmalloc-minimal4``, which ``make run`` installs)
through ``LD_PRELOAD``, set in the daemon's environment before it starts them; the daemon itself
keeps the system allocator. ``[signer] worker_allocator = "system"`` turns it off.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping

ALLOCATORS = ("tcmalloc", "system")
_LIBRARIES = {"tcmalloc": "tcmalloc_minimal"}


def preload_library(name: str) -> str | None:
    """The shared library that provides allocator ``name``, or None for the system allocator
    and when the library is not installed."""
    library = _LIBRARIES.get(name)
    return ctypes.util.find_library(library) if library else None


def worker_environment(
    library: str | None, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The variables to add to ``environ`` so that processes started from it preload
    ``library`` (from ``preload_library``; None: nothing to add)."""
    preloaded = environ.get("LD_PRELOAD", "")
    if library is None or library in preloaded.replace(":", " ").split():
        return {}
    return {"LD_PRELOAD": f"{library} {preloaded}".strip()}
