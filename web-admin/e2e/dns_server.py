"""A tiny authoritative DNS server on loopback for the browser tests.

Answers UDP queries from a JSON zone file that the test rewrites as it goes
(re-read on every query): {"name.": {"TXT": ["..."], "MX": ["10 mx.example."]}}.
Unknown names answer NXDOMAIN, known names without the type an empty NOERROR.
Prints "dns listening on 127.0.0.1:PORT" once bound.
"""

import json
import socket
import sys

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset


def main() -> None:
    zone_path = sys.argv[1]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    print(f"dns listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
        except Exception:
            continue
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # AA
        try:
            with open(zone_path, encoding="utf-8") as f:
                zone = {k.lower(): v for k, v in json.load(f).items()}
        except (OSError, ValueError):
            zone = {}
        for question in query.question:
            name = question.name.to_text().lower()
            records = zone.get(name)
            if records is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
                continue
            kind = dns.rdatatype.to_text(question.rdtype)
            values = records.get(kind, [])
            if values:
                if kind == "TXT":
                    values = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
                response.answer.append(dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, question.rdtype, values))
        sock.sendto(response.to_wire(), peer)


if __name__ == "__main__":
    main()
