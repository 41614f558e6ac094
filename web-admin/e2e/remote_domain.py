"""Another mail domain on loopback, for the browser tests: its MX and its web host.

- An SMTP server (aiosmtpd) taking every message, each written whole to
  <dir>/received/<n>.eml once accepted.
- An HTTPS server publishing the domain's Web Key Directory: a request for
  /.well-known/openpgpkey/.../hu/<hash>?l=<local> answers the binary key in
  <dir>/keys/<local>, when there is one, else 404. Its certificate is issued
  by a test authority made here, written to <dir>/ca.pem for Caliop to trust
  (`delivery.extra_ca_file`), for the names given after the directory.

Prints "remote listening on HTTPS_PORT,SMTP_PORT" once both are bound.
"""

import asyncio
import datetime
import http.server
import os
import ssl
import sys
import threading
import urllib.parse

from aiosmtpd.smtp import SMTP
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def certificates(directory: str, names: list[str]) -> tuple[str, str]:
    """A test authority (written to ca.pem) and a server certificate for `names`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Remote domain test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "ca.pem")
    with open(ca_path, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    chain_path = os.path.join(directory, "server.pem")
    with open(chain_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    return ca_path, chain_path


class Received:
    """aiosmtpd's handler: every accepted message kept in a file."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.count += 1
            path = os.path.join(self.directory, f"{self.count}.eml")
        data = envelope.original_content or envelope.content
        with open(path + ".part", "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        os.rename(path + ".part", path)
        return "250 2.0.0 Ok: kept"


def main() -> None:
    directory, names = sys.argv[1], sys.argv[2:]
    received = os.path.join(directory, "received")
    keys = os.path.join(directory, "keys")
    os.makedirs(received, exist_ok=True)
    os.makedirs(keys, exist_ok=True)
    _, chain = certificates(directory, names)

    class Directory(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            local = urllib.parse.parse_qs(url.query).get("l", [""])[0]
            path = os.path.join(keys, os.path.basename(local)) if local else ""
            if url.path.startswith("/.well-known/openpgpkey/") and "/hu/" in url.path and path and os.path.isfile(path):
                with open(path, "rb") as f:
                    body = f.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def log_message(self, format: str, *args) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    web.socket = context.wrap_socket(web.socket, server_side=True)
    threading.Thread(target=web.serve_forever, daemon=True).start()

    loop = asyncio.new_event_loop()
    handler = Received(received)
    smtp = loop.run_until_complete(loop.create_server(lambda: SMTP(handler, hostname=names[0]), "127.0.0.1", 0))
    smtp_port = smtp.sockets[0].getsockname()[1]
    print(f"remote listening on {web.server_address[1]},{smtp_port}", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
