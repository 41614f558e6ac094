"""Fetches a domain's MTA-STS policy with postfix-mta-sts-resolver (an
independent MTA-STS client, from PyPI), as a sending MTA would, and prints
what it concluded as JSON: {"result": "VALID", "id": ..., "policy": {...}}.

Only where it looks is changed, not how it judges: its DNS questions go to
the test's DNS server, its HTTPS connection for `mta-sts.{domain}` to the
test's HTTPS port on loopback (the name is still the one asked for, in SNI
and in the certificate check), trusting the given CA file.

Usage: fetch.py DOMAIN DNS_HOST:PORT HTTPS_PORT CA_FILE
"""

import asyncio
import json
import socket
import ssl
import sys

import aiodns
import aiohttp
from aiohttp.abc import AbstractResolver
from postfix_mta_sts_resolver import resolver as sts


def main() -> None:
    domain, dns_server, https_port, ca_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    context = ssl.create_default_context(cafile=ca_file)

    class Loopback(AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [{"hostname": host, "host": "127.0.0.1", "port": https_port,
                     "family": socket.AF_INET, "proto": 0, "flags": 0}]

        async def close(self):
            pass

    original = aiohttp.ClientSession

    class Session(original):
        def __init__(self, *args, **kwargs):
            kwargs["connector"] = aiohttp.TCPConnector(resolver=Loopback(), ssl=context)
            kwargs.pop("loop", None)
            super().__init__(*args, **kwargs)

    sts.aiohttp.ClientSession = Session

    async def run():
        loop = asyncio.get_running_loop()
        resolver = sts.STSResolver(loop=loop, timeout=10)
        resolver._resolver = aiodns.DNSResolver(nameservers=[dns_server], timeout=5)
        result, found = await resolver.resolve(domain)
        out = {"result": result.name}
        if found is not None:
            policy_id, policy = found
            out["id"] = policy_id
            out["policy"] = policy
        print(json.dumps(out))

    asyncio.run(run())


if __name__ == "__main__":
    main()
