#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the project's own test material
(tests/conformance/, deploy/, docs/): run by fuzz/run.sh before fuzzing.
Seeds are derived, not committed; corpora grow in fuzz/corpus/."""
import glob, hashlib, json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
out = os.path.join(here, "seeds")

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)

def rel(*p):
    return os.path.join(root, *p)

def tokens_of(obj):
    """Every string value under a key named like a token, anywhere."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, str) and k in ("token", "nested", "claims_only", "proof", "jwe", "jws"):
                yield v
            else:
                yield from tokens_of(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from tokens_of(v)

# token: every conformance token.
with open(rel("tests/conformance/cases.jsonl")) as f:
    for line in f:
        if line.strip():
            for t in tokens_of(json.loads(line)):
                put("token", t)
for t in tokens_of(json.load(open(rel("tests/conformance/external_cases.json")))):
    put("token", t)

# keys: key sets, PEM keys (public and private), private JWKs.
for path in glob.glob(rel("tests/conformance/keys/*.json")) + [rel("deploy/dev/jwks.json")]:
    put("keys", open(path, "rb").read())
for path in glob.glob(rel("tests/conformance/jwe/pem/*.pem")):
    put("keys", open(path, "rb").read())
for name in ("vectors.json", "jose.json", "jose-daemon.json"):
    cases = json.load(open(rel("tests/conformance/jwe", name)))["cases"]
    for c in cases:
        if isinstance(c.get("key"), dict):
            put("keys", json.dumps({"keys": [c["key"]]}))
        # jwe: every JWE.
        for t in tokens_of(c):
            if t.count(".") == 4:
                put("jwe", t)
            elif t.count(".") == 2:
                put("token", t)

# dpop: RFC 9449's proofs.
for t in tokens_of(json.load(open(rel("tests/conformance/dpop/rfc9449.json")))):
    put("dpop", t)

# native_frame: one frame of each operation, and a pipelined read of them.
def frame(op, rid, body):
    return struct.pack(">IBBHI", 8 + len(body), 1, op, 0, rid) + body
token = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"
verify = frame(1, 1, b"\x00" + token)
verify_sel = frame(1, 2, b"\x03api" + token)
tlv = lambda t, v: struct.pack(">BH", t, len(v)) + v
ctx = (b"\x00" + struct.pack(">H", len(token)) + token + tlv(1, b"GET")
       + tlv(2, b"https://api.example.com/orders") + tlv(3, b"proof.x.y")
       + tlv(4, b"\x11" * 32) + tlv(5, b"\x7f\x00\x00\x01"))
verify_ctx = frame(4, 3, ctx)
ping = frame(2, 4, b"")
revoke = frame(3, 5, json.dumps({"jti": "abc", "exp": 1800000000, "iss": "https://issuer.example"}).encode())
revoke_sub = frame(3, 6, json.dumps({"sub": "alice", "before": 1700000000}).encode())
for f in (verify, verify_sel, verify_ctx, ping, revoke, revoke_sub, verify + ping + verify_ctx + revoke):
    put("native_frame", f)
# Replies: VALID, INVALID, PONG (status byte after the header; see docs/protocol.md).
put("native_frame", frame(0, 1, b"\x00\x00\x00" + b'{"sub":"alice"}'))

# config: the shipped configurations, and the documented examples.
for path in glob.glob(rel("deploy/**/*.toml"), recursive=True):
    put("config", open(path, "rb").read())
for path in (rel("docs/configuration.md"), rel("README.md")):
    text = open(path).read()
    for block in text.split("```toml\n")[1:]:
        put("config", block.split("\n```")[0])
put("config", "leeway = \"10s\"\n---\nJWTD_AUDIENCES=api,orders\nJWTD_DPOP=allowed\n")

for t in sorted(os.listdir(out)):
    print(f"seeds/{t}: {len(os.listdir(os.path.join(out, t)))}", file=sys.stderr)
