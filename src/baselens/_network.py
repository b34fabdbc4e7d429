"""The network-access guard shared by every stage that may fetch something.

``BASELENS_OFFLINE=1`` (tests set it) means: never reach beyond this machine. Loopback
URLs (a local mirror, a test server) stay allowed.
"""

from __future__ import annotations

import os
import urllib.parse

__all__ = ["LOOPBACK", "offline", "is_loopback", "check_online"]

#: host names that never leave this machine
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def offline() -> bool:
    """Whether ``BASELENS_OFFLINE`` is set.

    Returns
    -------
    bool
        True for ``1`` / ``true`` / ``yes`` (any case).
    """
    return os.environ.get("BASELENS_OFFLINE", "").lower() in ("1", "true", "yes")


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (127.0.0.1, localhost, ::1).

    Parameters
    ----------
    url : str
        Any URL.

    Returns
    -------
    bool
    """
    return urllib.parse.urlsplit(url).hostname in LOOPBACK


def check_online(what: str, url: str | None = None, *, error: type[Exception] = RuntimeError,
                 fix: str = "") -> None:
    """Raise ``error`` when offline, unless ``url`` is on the loopback.

    Parameters
    ----------
    what : str
        What needs the network (starts the message), e.g. ``"downloading https://..."``.
    url : str, optional
        The URL to be fetched; a loopback URL is allowed even offline.
    error : type of Exception
        The exception class the caller's users expect.
    fix : str
        What to do instead, appended to the message.

    Raises
    ------
    error
        ``"{what} needs the network, but BASELENS_OFFLINE is set: {fix}"``.
    """
    if not offline() or (url is not None and is_loopback(url)):
        return
    raise error(f"{what} needs the network, but BASELENS_OFFLINE is set"
                + (f": {fix}" if fix else ""))
