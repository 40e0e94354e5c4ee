"""A DNS server for tests that answers TXT queries from a dict (DKIM keys), over real UDP.

The one fake allowed in the DKIM tests: the public DNS cannot be reached from here, and the
point is to exercise dkimpy's real lookup path (dnspython, a resolver pointed at 127.0.0.1)."""

from __future__ import annotations

import socket
import threading

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsStub:
    def __init__(self, records: dict[str, str]) -> None:
        self.records = {k.rstrip(".").lower(): v for k, v in records.items()}
        self.queries: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="dns-stub")
        self.thread.start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            self.queries.append(name)
            value = self.records.get(name)
            if value is not None and question.rdtype == dns.rdatatype.TXT:
                # TXT strings are at most 255 bytes each; a 2048-bit key needs several.
                chunks = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
                reply.answer.append(dns.rrset.from_text(question.name, 60, dns.rdataclass.IN,
                                                        dns.rdatatype.TXT, chunks))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        self.thread.join(2)
