"""Who may reach hutch web: the bind rule of issue #14.

Bound to a loopback address, only programs on the host reach the dashboard (a
reverse proxy with its own authentication, an SSH tunnel, a browser on the host),
so it may run open. On any other address it refuses to start unless
authentication is configured (:func:`auth_configured`: a user in ``web_users`` or
``web_tokens`` on; hutch.web.auth then refuses every request without credentials
but the health probes).

A host name counts as loopback when every address it resolves to is one
(``localhost``), so a name cannot smuggle a public address past the rule.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..config import Settings


def loopback_addresses(host: str) -> list[str] | None:
    """The addresses ``host`` stands for when they are all loopback ones; None when
    one of them is not (``0.0.0.0`` and ``::`` are every address, so not loopback)."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ConfigurationError(f"web_host: cannot resolve {host!r} ({exc})") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if addresses and all(a.is_loopback for a in addresses):
        return [str(a) for a in addresses]
    return None


def auth_configured(conf: Settings) -> bool:
    """Whether ``hutch web`` authenticates: a user in ``web_users`` (HTTP basic) or
    ``web_tokens`` on (bearer tokens from ``hutch_web_tokens``)."""
    return bool(conf.web_users) or conf.web_tokens


def check_bind(host: str, auth_configured: bool = False) -> None:
    """Refuse (ConfigurationError: one line, exit 2) to serve ``host`` without
    authentication unless it is a loopback address."""
    if auth_configured or loopback_addresses(host) is not None:
        return
    raise ConfigurationError(
        f"web_host: refusing to listen on {host!r}, not a loopback address, without "
        f"authentication: add a user to web_users (hutch web hash-password makes its "
        f"hash) or set web_tokens = true and create a token (hutch web token create), "
        f"or listen on 127.0.0.1 or ::1 behind a reverse proxy that authenticates "
        f"(docs/dashboard.md)")
