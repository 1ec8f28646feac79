"""A bare SIP UAC for tests: sends one out-of-dialog MESSAGE over UDP, answers
a digest challenge (RFC 3261 / RFC 2617, MD5, qop=auth) when given
credentials, and returns the final status. It lets a test send exactly the
request it needs: the same Call-ID and CSeq twice (a carrier's resend), or no
credentials at all (a sender that is not the trunk)."""

from __future__ import annotations

import hashlib
import re
import secrets
import socket
from dataclasses import dataclass, field


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass
class SipMessage:
    gateway: tuple[str, int]
    from_number: str
    to_number: str
    body: str
    call_id: str = field(default_factory=lambda: f"{secrets.token_hex(8)}@amivono-test")
    cseq: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    local_host: str = "127.0.0.1"

    def _request(self, port: int, cseq: int, authorization: str | None) -> bytes:
        host, gw_port = self.gateway
        uri = f"sip:{self.to_number}@{host}:{gw_port}"
        body = self.body.encode()
        lines = [
            f"MESSAGE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_host}:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.from_number}@{self.local_host}>;tag={secrets.token_hex(4)}",
            f"To: <{uri}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} MESSAGE",
            *(f"{k}: {v}" for k, v in self.headers.items()),
            "Content-Type: text/plain;charset=UTF-8",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def send(self, user: str | None = None, password: str | None = None,
             timeout: float = 3.0) -> int:
        """The final status of the MESSAGE (a challenge answered once)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.local_host, 0))
            sock.settimeout(timeout)
            port = sock.getsockname()[1]
            status, text = self._exchange(sock, self._request(port, self.cseq, None))
            if status in (401, 407) and user is not None and password is not None:
                auth = self._authorization(text, user, password)
                status, _ = self._exchange(sock, self._request(port, self.cseq + 1, auth))
            return status

    def _exchange(self, sock: socket.socket, data: bytes) -> tuple[int, str]:
        sock.sendto(data, self.gateway)
        while True:
            text = sock.recv(65535).decode(errors="replace")
            status = int(text.split(" ", 2)[1])
            if status >= 200:  # skip 100 Trying
                return status, text

    def _authorization(self, challenge: str, user: str, password: str) -> str:
        header = re.search(r"^(?:WWW|Proxy)-Authenticate:\s*Digest\s+(.*)$", challenge,
                           re.MULTILINE | re.IGNORECASE)
        assert header, challenge
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
        host, port = self.gateway
        uri = f"sip:{self.to_number}@{host}:{port}"
        ha1 = _md5(f"{user}:{params['realm']}:{password}")
        ha2 = _md5(f"MESSAGE:{uri}")
        nc, cnonce = "00000001", secrets.token_hex(8)
        if "auth" in params.get("qop", "").split(","):
            response = _md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
            extra = f', qop=auth, nc={nc}, cnonce="{cnonce}"'
        else:
            response = _md5(f"{ha1}:{params['nonce']}:{ha2}")
            extra = ""
        opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
        return (f'Digest username="{user}", realm="{params["realm"]}", '
                f'nonce="{params["nonce"]}", uri="{uri}", response="{response}", '
                f'algorithm=MD5{extra}{opaque}')
