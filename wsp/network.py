"""Where `wsp up` is reached from at a venue: the machine's address on the local network.

Browsers give the microphone only to https pages or to localhost, so the operator opens the microphone
page on 127.0.0.1; the display links it hands out must still open on the phones and stage PCs of the
hall. So, unless told otherwise (``WSP_PUBLIC_URL``, ``WSP_PUBLISHER_HOST``, ``wsp up --local``), the
publisher listens on every interface and the links are built on this machine's LAN address. Ingest
stays where ``WSP_HOST`` puts it (loopback by default): only this machine creates sessions and sends
audio.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from common.settings import Settings

log = logging.getLogger(__name__)

EVERY_INTERFACE = "0.0.0.0"
PROBE_ADDRESS = ("192.0.2.1", 9)
"""A documentation address (TEST-NET-1): connecting a UDP socket to it sends nothing, but makes the
system pick the interface its default route leaves by."""


def lan_address() -> str | None:
    """This machine's IPv4 address on its local network, or None (no network, loopback only)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(PROBE_ADDRESS)
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if is_loopback(address) or address == EVERY_INTERFACE else address


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def for_venue(settings: Settings, local: bool, address: str | None) -> Settings:
    """``settings`` with the publisher open to the local network at ``address`` (see the module), unless
    ``local``, no address was found, or the settings already say where displays reach the publisher."""
    if local:
        return settings.model_copy(update={"publisher_host": settings.host})
    if address is None or settings.public_url or settings.publisher_host or not is_loopback(settings.host):
        return settings
    public = f"http://{address}:{settings.publisher_port}"
    return settings.model_copy(update={"publisher_host": EVERY_INTERFACE, "public_url": public})


def exposure_notes(settings: Settings) -> list[str]:
    """What a venue's operator should know about who can reach the services, one sentence each."""
    notes = []
    if not is_loopback(settings.publisher_listen_host()):
        notes.append(
            f"the publisher listens on {settings.publisher_listen_host()}: phones and screens on this "
            "network open display links there; each link carries its session's read token, which "
            "only reads captions."
        )
    if not is_loopback(settings.host):
        if settings.api_key is None:
            notes.append(
                f"ingest listens on {settings.host} without WSP_API_KEY: anyone who reaches this machine "
                "can create sessions and use its workers. Set WSP_API_KEY (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))') and enter it on the microphone page."
            )
        else:
            notes.append(f"ingest listens on {settings.host}; creating a session needs WSP_API_KEY.")
    elif notes:
        notes.append(
            f"ingest stays on {settings.host}: sessions are created and audio is sent from this machine "
            "only (WSP_HOST=0.0.0.0 opens it too; then set WSP_API_KEY)."
        )
    return notes
