"""A whole IMAP session with Python's imaplib, a client nobody here wrote.

Usage: session.py HOST IMAP_PORT SMTP_PORT ADDRESS PASSWORD

Logs in, lists, makes a folder, receives three messages over SMTP, selects,
fetches (envelope, structure, whole and partial bodies), flags, searches,
moves, appends, expunges while a second connection watches, and waits in
IDLE on the second connection for a message delivered over SMTP meanwhile.
Every step asserts; on success it prints one JSON line for the Rust test to
check against the API.
"""

import email.utils
import imaplib
import json
import re
import smtplib
import sys
import time

host, imap_port, smtp_port, address, password = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
imaplib.Commands.setdefault("MOVE", ("SELECTED",))


def message(subject, body):
    return (
        f"From: Alice <alice@sender.test>\r\nTo: <{address}>\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid(domain='sender.test')}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def deliver(subject, body):
    raw = message(subject, body)
    with smtplib.SMTP(host, smtp_port) as smtp:
        smtp.sendmail("alice@sender.test", [address], raw)
    return raw


def ok(result, what):
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data}"
    return data


def connect():
    c = imaplib.IMAP4(host, imap_port)
    for capability in ("IMAP4REV1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE", "QUOTA", "NAMESPACE", "AUTH=PLAIN"):
        assert capability in c.capabilities, f"{capability} not in {c.capabilities}"
    ok(c.login(address, password), "LOGIN")
    return c


out = {}
c = connect()

# A wrong password is refused with the RFC 5530 code, and the session stays usable.
bad = imaplib.IMAP4(host, imap_port)
try:
    bad.login(address, "not the password")
    raise AssertionError("a wrong password was accepted")
except imaplib.IMAP4.error as e:
    assert "AUTHENTICATIONFAILED" in str(e), e
bad.logout()

listed = ok(c.list(), "LIST")
names = {}
for line in listed:
    m = re.match(rb'\(([^)]*)\) "/" "?([^"]*)"?', line)
    assert m, line
    names[m.group(2).decode()] = m.group(1).decode()
for name, use in (("INBOX", None), ("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Archive", "\\Archive"), ("Junk", "\\Junk"), ("Trash", "\\Trash")):
    assert name in names, f"{name} missing from {names}"
    if use:
        assert use in names[name], f"{name} lacks {use}: {names[name]}"

ok(c.create("Projects/2026"), "CREATE")
listed = ok(c.list('""', "Projects*"), "LIST Projects*")
assert any(b"\\HasChildren" in l and b'"Projects"' in l for l in listed), listed
assert any(b'"Projects/2026"' in l for l in listed), listed
typ, _ = c.create("Projects/2026")
assert typ == "NO", "a second CREATE of the same name is refused"

sent = [deliver(s, f"Body of {s}.") for s in ("one", "two", "three")]
count = int(ok(c.select("INBOX"), "SELECT")[0])
assert count == 3, count
uidvalidity = int(c.response("UIDVALIDITY")[1][0])
out["uidvalidity"] = uidvalidity

data = ok(c.fetch("1:3", "(UID FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE)"), "FETCH")
joined = b" ".join(d if isinstance(d, bytes) else b"".join(d) for d in data)
for subject in (b'"one"', b'"two"', b'"three"'):
    assert subject in joined, joined
assert b'("TEXT" "PLAIN"' in joined.upper(), joined
uids = [int(u) for u in re.findall(rb"UID (\d+)", joined)]
assert uids == sorted(uids) and len(uids) == 3, uids
sizes = [int(s) for s in re.findall(rb"RFC822.SIZE (\d+)", joined)]

data = ok(c.uid("FETCH", str(uids[0]), "(BODY.PEEK[])"), "UID FETCH BODY.PEEK[]")
body = data[0][1]
assert body.endswith(sent[0]), "the stored message is what was sent, behind our trace headers"
assert len(body) == sizes[0], f"RFC822.SIZE {sizes[0]} is the size of BODY[] ({len(body)})"
data = ok(c.uid("FETCH", str(uids[0]), "(BODY.PEEK[]<0.10>)"), "partial")
assert data[0][1] == body[:10], data
data = ok(c.uid("FETCH", str(uids[1]), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])"), "header fields")
assert data[0][1] == b"Subject: two\r\n\r\n", data
flags = ok(c.uid("FETCH", str(uids[0]), "(FLAGS)"), "FLAGS")[0]
assert b"\\Seen" not in flags, "PEEK does not mark seen"
data = ok(c.uid("FETCH", str(uids[2]), "(BODY[TEXT])"), "BODY[TEXT]")
assert data[0][1] == b"Body of three.\r\n", data
assert b"\\Seen" in b"".join(x if isinstance(x, bytes) else x[0] for x in data), f"BODY[] marks seen: {data}"

data = ok(c.store("1", "+FLAGS", "(\\Flagged $Work)"), "STORE")
assert b"\\Flagged" in data[0] and b"$Work" in data[0], data
assert ok(c.search(None, "FLAGGED"), "SEARCH")[0] == b"1"
assert ok(c.uid("SEARCH", "SUBJECT", "two"), "UID SEARCH")[0] == str(uids[1]).encode()
assert ok(c.search(None, "UNSEEN"), "SEARCH UNSEEN")[0] == b"1 2"

typ, data = c.uid("MOVE", str(uids[2]), "Archive")
assert typ == "OK", data
assert c.response("COPYUID")[1][0] is not None
assert int(ok(c.select("INBOX"), "reselect")[0]) == 2
typ, data = c.uid("MOVE", str(uids[0]), "Nowhere")
assert typ == "NO" and b"TRYCREATE" in data[0], data

draft = message("A draft", "Not finished.")
typ, data = c.append("Drafts", "(\\Draft)", imaplib.Time2Internaldate(time.time()), draft)
assert typ == "OK" and b"APPENDUID" in data[0], data
draft_uid = int(data[0].split()[2].rstrip(b"]"))

# A second session sees what the first does: flags, expunges, new mail.
c2 = connect()
assert int(ok(c2.select("INBOX"), "SELECT 2")[0]) == 2
ok(c.store("2", "+FLAGS", "(\\Deleted)"), "STORE Deleted")
expunged = ok(c.expunge(), "EXPUNGE")
assert expunged == [b"2"], expunged
ok(c2.noop(), "NOOP 2")
assert c2.response("EXPUNGE")[1] == [b"2"], "the second session is told of the expunge"
ok(c.store("1", "+FLAGS", "(\\Answered)"), "STORE Answered")
ok(c2.noop(), "NOOP 2 again")
fetched = c2.response("FETCH")[1]
assert fetched and b"\\Answered" in fetched[0], fetched

# IDLE: new mail is pushed while the client waits.
tag = c2._new_tag().decode()
c2.send(f"{tag} IDLE\r\n".encode())
assert c2.readline().startswith(b"+"), "IDLE continuation"
c2.sock.settimeout(15)
started = time.monotonic()
deliver("during idle", "Pushed.")
while True:
    line = c2.readline()
    if line.endswith(b"EXISTS\r\n"):
        break
out["idle_latency_ms"] = round((time.monotonic() - started) * 1000)
assert line == b"* 2 EXISTS\r\n", line
c2.send(b"DONE\r\n")
while True:
    line = c2.readline()
    if line.startswith(tag.encode()):
        assert b"OK" in line, line
        break
c2.sock.settimeout(None)

quota = ok(c.getquotaroot("INBOX"), "GETQUOTAROOT")
assert b'"INBOX" ""' in quota[0][0], quota
assert re.match(rb'"" \(STORAGE \d+ \d+\)', quota[1][0]), quota
status = ok(c.status("Archive", "(MESSAGES UNSEEN UIDNEXT UIDVALIDITY)"), "STATUS")
assert b"MESSAGES 1" in status[0], status

out.update({"inbox": int(ok(c.select("INBOX"), "select")[0]), "draft_uid": draft_uid, "flagged_uid": uids[0],
            "moved_subject": "three"})
c2.logout()
c.logout()
print(json.dumps(out))
