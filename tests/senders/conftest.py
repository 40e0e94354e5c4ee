"""A DKIM key pair (made by openssl) and the local DNS server that publishes it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest

from tests.dnsstub import DnsStub
from tests.servers import unavailable


@dataclass(frozen=True)
class DkimKey:
    private_pem: bytes
    public_b64: str


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to make a DKIM key (apt-get install openssl)")
    d = tmp_path_factory.mktemp("dkim")
    key = Path(d, "key.pem")
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "2048"], check=True,
                   capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    import base64

    return DkimKey(key.read_bytes(), base64.b64encode(der).decode())


@pytest.fixture
def dns_stub(dkim_key: DkimKey) -> Iterator[DnsStub]:
    stub = DnsStub({"sel._domainkey.clinic.test": f"v=DKIM1; k=rsa; p={dkim_key.public_b64}",
                    "sel._domainkey.other.test": f"v=DKIM1; k=rsa; p={dkim_key.public_b64}"})
    yield stub
    stub.stop()


def signed_mail(key: DkimKey, sender: str = "coder@clinic.test", selector: bytes = b"sel",
                domain: bytes = b"clinic.test", subject: str = "77301 and 77338 same day?",
                to: str = "consult@cc.test", **headers: str) -> bytes:
    """A question signed by ``domain`` (CRLF line ends, as it travels over SMTP)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="clinic.test")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Medicare, office, DOS 2026-05-01. Can 77301 and 77338 be billed the same day?\n")
    raw = msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signature = dkim.sign(raw, selector, domain, key.private_pem,
                          include_headers=[b"from", b"to", b"subject", b"message-id"])
    return bytes(signature) + raw
