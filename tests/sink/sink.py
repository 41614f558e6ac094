#!/usr/bin/env python3
"""Test SMTP sink for Caliop's integration tests.

The Rust integration tests start this script as a child process, point
Caliop's outbound delivery at it and then read what it received. It plays the
part of a remote mail exchanger: it accepts mail over SMTP, can be told to
misbehave in the ways a real one does (temporary and permanent refusals, a slow
DATA reply), and records every accepted message as a JSON file together with an
independent check of its DKIM signatures made with dkimpy -- an implementation
that shares no code with Caliop's signer.

Usage:

    python3 tests/sink/sink.py --dir OUT_DIR [--dns 127.0.0.1:PORT]
        [--data-replies 451,250] [--refuse-rcpt ADDR=550 ...]
        [--hold-first-data SECONDS] [--tls | --cert FILE --key FILE]

Contract with the caller:

* The sink listens on 127.0.0.1 on a port chosen by the OS. The first line it
  writes to stdout is exactly ``listening on 127.0.0.1:PORT``; nothing else is
  ever written to stdout. Diagnostics go to stderr, one line per event.
* EHLO offers SIZE, 8BITMIME, SMTPUTF8 and PIPELINING (and STARTTLS with
  --tls); HELO works too.
* It runs until SIGTERM or SIGINT, or until its stdin reaches end of file. The
  caller keeps a pipe to the sink's stdin open for as long as it wants the sink,
  so the sink goes away with the test process even if that one is killed.
  (Started with stdin on /dev/null, the sink therefore exits at once.)
* Each accepted message becomes ``OUT_DIR/NNNN.json`` (0001, 0002, ... in the
  order of acceptance). The file is written under a temporary name and renamed
  into place before the 250 reply is sent, so a reader never sees a partial
  file, and a client that got 250 can rely on the file being there. Keys:

      mail_from   str          envelope sender (MAIL FROM)
      rcpt_tos    [str]        accepted envelope recipients (RCPT TO)
      message_id  str | null   value of the first Message-ID header, unfolded
                               and trimmed
      data        str          the message as received (CRLF line ends, dots
                               unstuffed), decoded as UTF-8, errors replaced
      tls         bool         whether the transaction ran under STARTTLS
      dkim        [object]     one per DKIM-Signature header, top to bottom:
                  {"domain": d=, "selector": s=, "algorithm": a=,
                   "verified": bool, "error": str | null}
      arc         object|null  the ARC chain's validation by dkimpy when the
                  message has an ARC set: {"cv": "pass"|"fail"|"none",
                  "reason": str}

  Messages answered with anything but 250 are not recorded.

Options:

--dns HOST:PORT
    DNS server that holds the DKIM public keys (TXT records at
    SELECTOR._domainkey.DOMAIN), asked over UDP with EDNS (payload 1232,
    falling back to TCP on truncation); the first TXT record at the name is
    the key. Without --dns no signature can be verified: every entry has
    verified=false and an error saying so. A signature that fails has its
    reason in "error" (e.g. "missing public key: ...", "ValidationError: body
    hash mismatch ...", "signature did not verify").
--data-replies CODES
    Comma-separated SMTP codes: the Nth DATA over the sink's lifetime (1-based,
    counting every message whose data was fully received) is answered with the
    Nth code; once the list is used up, DATA gets 250. A 4xx code is sent as
    ``CODE 4.3.0 greylisted, try again later``, a 5xx code as
    ``CODE 5.7.1 message refused by policy``.
--refuse-rcpt ADDR=CODE (repeatable)
    RCPT TO:<ADDR> (compared case-insensitively) is answered with
    ``CODE 5.1.1 <ADDR>: no such user here`` for a 5xx code, or
    ``CODE 4.2.1 <ADDR>: mailbox busy, try later`` for a 4xx code.
--hold-first-data SECONDS
    The first DATA is held that long before it is answered, so that a test can
    kill the sending process in mid-delivery. If the client connection is gone
    by the end of the hold, the message is neither recorded nor answered;
    otherwise it is handled as usual (recorded and answered 250, unless
    --data-replies says otherwise for it).
--tls
    Offer STARTTLS with a throw-away self-signed certificate (CN=sink.test)
    made with the openssl CLI at start. STARTTLS is offered, not required.
--cert FILE --key FILE
    Offer STARTTLS with this certificate instead (e.g. one a test's own CA
    issued for the MX host name, so that verifying clients accept it).

Dependencies: Python 3.11 with aiosmtpd, dkimpy, dnspython and pynacl (dkimpy
needs pynacl for ed25519-sha256). scripts/test installs pinned versions into a
virtualenv and exports its interpreter as CALIOP_TEST_PYTHON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import dkim
import dns.rdatatype
import dns.resolver
from aiosmtpd.smtp import SMTP, Envelope, Session

LISTEN_HOST = "127.0.0.1"
SERVER_HOSTNAME = "sink.test"
DNS_LIFETIME_SECONDS = 5.0

log = logging.getLogger("sink")


def check_arc(message: bytes, fields: list[tuple[bytes, bytes]],
              dns_server: Optional[tuple[str, int]]) -> Optional[dict]:
    """The ARC chain's validation (RFC 8617) by dkimpy, or None without an ARC set:
    {"cv": "pass" | "fail" | "none", "reason": str}."""
    if not any(n.lower() == b"arc-seal" for n, _ in fields):
        return None
    if dns_server is None:
        return {"cv": "none", "reason": "no DNS server given"}
    try:
        cv, _results, reason = dkim.arc_verify(message, dnsfunc=make_txt_lookup(dns_server))
        cv = cv.decode() if isinstance(cv, bytes) else str(cv)
        return {"cv": cv, "reason": str(reason)}
    except Exception as e:
        return {"cv": "fail", "reason": f"{type(e).__name__}: {e}"}


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


@dataclass
class Config:
    out_dir: Path
    dns_server: Optional[tuple[str, int]]
    data_replies: list[int]
    refuse_rcpt: dict[str, int]  # lower-cased address -> reply code
    hold_first_data: float
    tls: bool
    cert: Optional[Path]
    key: Optional[Path]


def _smtp_failure_code(text: str) -> int:
    code = int(text)
    if not 400 <= code <= 599:
        raise ValueError(f"{code} is not a 4xx or 5xx SMTP code")
    return code


def _dns_server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {text!r}") from None


def _data_replies(text: str) -> list[int]:
    codes = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            code = int(item)
            if code != 250:
                _smtp_failure_code(item)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad DATA reply {item!r}: expected 250 or a 4xx/5xx code"
            ) from None
        codes.append(code)
    return codes


def _refuse_rcpt(text: str) -> tuple[str, int]:
    addr, sep, code = text.rpartition("=")
    if not sep or not addr:
        raise argparse.ArgumentTypeError(f"expected ADDR=CODE, got {text!r}")
    try:
        return addr.strip(), _smtp_failure_code(code.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad code in {text!r}: {e}") from None


def parse_args(argv: list[str]) -> Config:
    p = argparse.ArgumentParser(
        description="SMTP sink for Caliop's integration tests "
        "(records accepted mail as JSON and checks DKIM signatures)."
    )
    p.add_argument("--dir", required=True, type=Path, help="where to write NNNN.json")
    p.add_argument("--dns", type=_dns_server, metavar="HOST:PORT",
                   help="DNS server holding the DKIM public keys")
    p.add_argument("--data-replies", type=_data_replies, default=[], metavar="CODES",
                   help="comma-separated codes for the 1st, 2nd, ... DATA (then 250)")
    p.add_argument("--refuse-rcpt", type=_refuse_rcpt, action="append", default=[],
                   metavar="ADDR=CODE", help="refuse RCPT TO:<ADDR> with CODE (repeatable)")
    p.add_argument("--hold-first-data", type=float, default=0.0, metavar="SECONDS",
                   help="hold the first DATA this long before answering")
    p.add_argument("--tls", action="store_true", help="offer STARTTLS (self-signed)")
    p.add_argument("--cert", type=Path, help="offer STARTTLS with this PEM certificate (with --key)")
    p.add_argument("--key", type=Path, help="the PEM private key of --cert")
    a = p.parse_args(argv)
    return Config(
        out_dir=a.dir,
        dns_server=a.dns,
        data_replies=a.data_replies,
        refuse_rcpt={addr.lower(): code for addr, code in a.refuse_rcpt},
        hold_first_data=max(0.0, a.hold_first_data),
        tls=a.tls or a.cert is not None,
        cert=a.cert,
        key=a.key,
    )


# --------------------------------------------------------------------------
# Message inspection: headers and DKIM
# --------------------------------------------------------------------------


def header_fields(message: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a message as (name, unfolded value) pairs, in order.

    Deliberately simple and lenient: it never raises, whatever the input, so
    that a malformed message is still recorded.
    """
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    fields: list[tuple[bytes, bytes]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip())
            continue
        name, sep, value = line.partition(b":")
        if sep:
            fields.append((name.strip(), value.strip()))
    return fields


def first_header(fields: list[tuple[bytes, bytes]], name: str) -> Optional[str]:
    wanted = name.lower().encode()
    for n, v in fields:
        if n.lower() == wanted:
            return v.decode("utf-8", errors="replace")
    return None


def signature_tags(value: bytes) -> dict[str, str]:
    """Tag=value pairs of a DKIM-Signature, whitespace removed; lenient."""
    tags: dict[str, str] = {}
    for spec in value.split(b";"):
        key, sep, val = spec.partition(b"=")
        if sep:
            tags[key.strip().decode("ascii", errors="replace")] = re.sub(
                rb"\s+", b"", val
            ).decode("ascii", errors="replace")
    return tags


class _ErrorCapture(logging.Handler):
    """Keeps the error lines dkimpy logs.

    dkimpy reports some failures (a missing or malformed key record, a DNS
    timeout) only through its logger and then returns False; this recovers
    the reason for the JSON file.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a badly formatted log record must not fail a check
            self.messages.append(str(record.msg))


def make_txt_lookup(server: tuple[str, int]) -> Callable[..., Optional[bytes]]:
    """A dnsfunc for dkimpy that asks the given DNS server, and only it.

    dkimpy calls ``dnsfunc(name, timeout=...)`` with the record name as bytes
    (``selector._domainkey.domain.``) and expects the TXT record's
    character-strings concatenated into one bytes value, or None when there
    is no such record (see dkim/dnsplug.py); like dkimpy's own lookup, the
    first TXT record at the name is used.
    """
    host, port = server

    def get_txt(name: bytes, timeout: float = DNS_LIFETIME_SECONDS) -> Optional[bytes]:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = timeout
        resolver.use_edns(0, 0, 1232)  # room for 4096-bit RSA keys over UDP
        qname = name.decode("ascii", errors="replace") if isinstance(name, bytes) else name
        try:
            answer = resolver.resolve(qname, dns.rdatatype.TXT, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    return get_txt


def check_dkim(message: bytes, fields: list[tuple[bytes, bytes]],
               dns_server: Optional[tuple[str, int]]) -> list[dict]:
    """One result per DKIM-Signature header, in header order."""
    signatures = [v for n, v in fields if n.lower() == b"dkim-signature"]
    lookup = make_txt_lookup(dns_server) if dns_server else None
    results = []
    for idx, value in enumerate(signatures):
        tags = signature_tags(value)
        entry = {
            "domain": tags.get("d"),
            "selector": tags.get("s"),
            "algorithm": tags.get("a"),
            "verified": False,
            "error": None,
        }
        if lookup is None:
            entry["error"] = "no DNS server given (start the sink with --dns HOST:PORT)"
            results.append(entry)
            continue
        capture = _ErrorCapture()
        dkim_log = logging.Logger(f"sink.dkim.{idx}")  # private, not in the registry
        dkim_log.addHandler(capture)
        try:
            verifier = dkim.DKIM(message, logger=dkim_log, timeout=DNS_LIFETIME_SECONDS)
            entry["verified"] = bool(verifier.verify(idx=idx, dnsfunc=lookup))
            if not entry["verified"]:
                entry["error"] = (capture.messages[-1] if capture.messages
                                  else "signature did not verify")
        except Exception as e:  # any failure belongs to this signature only
            entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    return results


# --------------------------------------------------------------------------
# SMTP
# --------------------------------------------------------------------------


def describe(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class SinkSMTP(SMTP):
    """aiosmtpd's protocol, plus a log line when a connection opens or closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starting_tls = self._original_transport is not None
        super().connection_made(transport)
        if starting_tls:
            log.info("%s: STARTTLS done", describe(self.session))
        else:
            log.info("%s: connected", describe(self.session))

    def connection_lost(self, error: Optional[Exception]) -> None:
        if self.session is not None:
            log.info("%s: connection closed%s", describe(self.session),
                     f" ({error})" if error else "")
        super().connection_lost(error)


@dataclass
class Handler:
    """aiosmtpd handler: RCPT and DATA policy, and recording."""

    config: Config
    data_count: int = 0  # DATA commands whose data was fully received
    recorded: int = 0  # messages written to OUT_DIR

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        # aiosmtpd reads commands one at a time from a buffered stream, so it
        # handles pipelined commands, but it does not advertise PIPELINING.
        # Add it before the closing "250 HELP" line. (ENHANCEDSTATUSCODES is
        # not advertised: aiosmtpd's own replies carry no enhanced codes.)
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        code = self.config.refuse_rcpt.get(address.lower())
        if code is not None:
            if code >= 500:
                reply = f"{code} 5.1.1 <{address}>: no such user here"
            else:
                reply = f"{code} 4.2.1 <{address}>: mailbox busy, try later"
            log.info("%s: RCPT TO:<%s> refused: %s", describe(session), address, reply)
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session,
                          envelope: Envelope) -> str:
        self.data_count += 1
        n = self.data_count
        who = describe(session)
        code = (self.config.data_replies[n - 1]
                if n <= len(self.config.data_replies) else 250)

        if n == 1 and self.config.hold_first_data > 0:
            log.info("%s: DATA #%d: holding the reply for %gs", who, n,
                     self.config.hold_first_data)
            try:
                await asyncio.sleep(self.config.hold_first_data)
            except asyncio.CancelledError:
                # aiosmtpd cancels the session's task when the client goes away.
                log.info("%s: DATA #%d: client left during the hold; not recorded", who, n)
                raise
            transport = server.transport
            if transport is None or transport.is_closing():
                log.info("%s: DATA #%d: client left during the hold; not recorded", who, n)
                return "421 4.4.2 connection lost"  # nobody is there to read it

        if code >= 500:
            reply = f"{code} 5.7.1 message refused by policy"
        elif code >= 400:
            reply = f"{code} 4.3.0 greylisted, try again later"
        else:
            try:
                seq = await self.record(session, envelope)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: DATA #%d: could not record the message", who, n)
                reply = "451 4.3.0 sink could not record the message"
            else:
                reply = f"250 2.0.0 OK: recorded as {seq:04d}.json"
        log.info("%s: DATA #%d from <%s> to %s: %s", who, n, envelope.mail_from,
                 ", ".join(f"<{r}>" for r in envelope.rcpt_tos), reply)
        return reply

    async def record(self, session: Session, envelope: Envelope) -> int:
        content = envelope.original_content
        if content is None:
            content = envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", errors="surrogateescape")
        fields = header_fields(content)
        # DKIM checks may wait on DNS: keep them off the event loop so that
        # other sessions are served meanwhile.
        dkim_results = await asyncio.get_running_loop().run_in_executor(
            None, check_dkim, content, fields, self.config.dns_server)
        arc_result = await asyncio.get_running_loop().run_in_executor(
            None, check_arc, content, fields, self.config.dns_server)
        doc = {
            "mail_from": envelope.mail_from or "",
            "rcpt_tos": list(envelope.rcpt_tos),
            "message_id": first_header(fields, "Message-ID"),
            "data": content.decode("utf-8", errors="replace"),
            "tls": session.ssl is not None,
            "dkim": dkim_results,
            "arc": arc_result,
        }
        # No await from here on: numbering and writing cannot interleave
        # with another session's.
        self.recorded += 1
        seq = self.recorded
        final = self.config.out_dir / f"{seq:04d}.json"
        temp = self.config.out_dir / f".{seq:04d}.json.tmp"
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=2)
            f.write("\n")
        os.rename(temp, final)
        return seq


def make_tls_context(config: Config) -> ssl.SSLContext:
    """A server context with the given certificate, or a fresh self-signed one for sink.test."""
    if config.cert is not None:
        if config.key is None:
            raise SystemExit("sink: --cert needs --key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config.cert, config.key)
        return context
    with tempfile.TemporaryDirectory(prefix="caliop-sink-tls-") as tmp:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        made = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-subj", "/CN=sink.test", "-days", "1",
             "-addext", "subjectAltName=DNS:sink.test,IP:127.0.0.1",
             "-keyout", key, "-out", cert],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        if made.returncode != 0:
            raise SystemExit(f"sink: openssl could not make a certificate:\n{made.stderr}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    return context


def watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Block on stdin in a daemon thread; stop the sink when it reaches EOF."""

    def run() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass  # no usable stdin: treat as EOF
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=run, name="stdin-watch", daemon=True).start()


async def serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    tls_context = make_tls_context(config) if config.tls else None
    handler = Handler(config)

    def protocol() -> SinkSMTP:
        return SinkSMTP(
            handler,
            hostname=SERVER_HOSTNAME,
            ident="Caliop test sink",
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=False,
            loop=loop,
        )

    # Ways to stop are in place before the port is announced, so that a caller
    # may signal the sink as soon as it has read the first line.
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_stdin(loop, stop)

    server = await loop.create_server(protocol, host=LISTEN_HOST, port=0)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"listening on {LISTEN_HOST}:{port}\n")
    sys.stdout.flush()
    log.info("listening on %s:%d (tls=%s, dns=%s)", LISTEN_HOST, port, config.tls,
             "%s:%d" % config.dns_server if config.dns_server else "none")

    await stop.wait()
    log.info("stopping (%d message(s) recorded)", handler.recorded)
    server.close()


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter("sink: %(message)s"))
    log.addHandler(stderr)
    log.setLevel(logging.INFO)
    log.propagate = False
    config.out_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
