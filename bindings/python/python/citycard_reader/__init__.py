"""Verify citycard resident cards offline, from Python.

    import citycard_reader
    result = citycard_reader.verify("ACS ACR122U", "liege.bundle", "library.cred")
    if result["code"] == 0:
        print(result["attributes"], result.get("pseudonym"))

``verify`` returns the ``verify.v1`` document (``schemas/verify.v1.json``) as a
dict: a verdict (``"verdict"``, ``"code"`` 0 only for a genuine card, the
disclosed ``"attributes"``, the ``"pseudonym"``) or an error (``"error"``,
``"message"``, ``"code"`` 1, 2 or 3). It never raises for a card or file
problem: the dict says what happened. ``reader`` is a PC/SC reader name (or a
unique part of it), or ``"emulated:FILE"`` for the built-in emulated card.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Optional, Union

from . import _native

__all__ = ["verify", "VERDICT_CODES", "__version__"]

__version__ = _native.version()

#: Every verdict and its stable code (also ``citycard verify``'s exit code).
VERDICT_CODES = {
    "genuine": 0, "not_a_citycard": 10, "blank": 11, "terminated": 12, "card_refused": 13,
    "unauthorised": 14, "credential_expired": 15, "tampered": 20, "replay": 21, "clone": 22,
    "unknown_issuer": 23, "bad_issuer_signature": 24, "station_not_valid_at_issue": 25,
    "expired": 30, "not_yet_valid": 31, "revoked": 32, "revocation_list_stale": 33,
    "card_removed": 40, "transport_error": 41,
}

PathLike = Union[str, "os.PathLike[str]"]


def verify(
    reader: str,
    trust: PathLike,
    credential: PathLike,
    *,
    root_fingerprint: Optional[str] = None,
    attributes: Optional[Iterable[str]] = None,
    stale: str = "reject",
    grace_secs: int = 0,
    always_send_certificate: bool = False,
    wait_secs: int = 30,
) -> dict[str, Any]:
    """Wait up to ``wait_secs`` for a card on ``reader``, verify it, return the document."""
    request = {
        "reader": reader,
        "trust": os.fspath(trust),
        "credential": os.fspath(credential),
        "root_fingerprint": root_fingerprint,
        "attributes": None if attributes is None else list(attributes),
        "stale": stale,
        "grace_secs": grace_secs,
        "always_send_certificate": always_send_certificate,
        "wait_secs": wait_secs,
    }
    return json.loads(_native.verify_json(json.dumps(request)))
