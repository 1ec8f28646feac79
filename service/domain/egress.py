"""Which addresses a webhook may reach: public unicast only, unless the
operator allows a network (AMIVONO_WEBHOOK_ALLOWED_NETWORKS). Checked on the
address the name resolves to, at creation and again at every delivery (which
connects to the address it checked, so DNS cannot change it in between)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Cloud metadata services that are not otherwise private or link-local.
METADATA = (ipaddress.ip_network("fd00:ec2::254/128"), ipaddress.ip_network("100.100.100.200/32"))


class RefusedUrl(ValueError):
    pass


def allowed_networks(setting: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n.strip(), strict=False)
                 for n in setting.split(",") if n.strip())


def why_refused(address: Address, allowed: tuple[Network, ...]) -> str | None:
    """None when a webhook may connect to `address`, else why not."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.sixtofour is not None:
        # 6to4 (2002::/16) is routed to the IPv4 address it embeds.
        embedded = why_refused(address.sixtofour, allowed)
        if embedded is not None:
            return f"{address} is 6to4 for {embedded}"
    for what, bad in (("loopback", address.is_loopback), ("private", address.is_private),
                      ("site-local", getattr(address, "is_site_local", False)),
                      ("link-local", address.is_link_local),
                      ("multicast", address.is_multicast), ("reserved", address.is_reserved),
                      ("unspecified", address.is_unspecified),
                      ("shared (CGNAT)", address in ipaddress.ip_network("100.64.0.0/10")),
                      ("a metadata service", any(address in net for net in METADATA))):
        if bad:
            return f"{address} is {what}"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL with a host, else RefusedUrl."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise RefusedUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("the URL must be http or https")
    if not parts.hostname:
        raise RefusedUrl("the URL has no host")
    if parts.username or parts.password:
        raise RefusedUrl("the URL must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)
