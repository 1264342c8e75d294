#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz corpus (fuzz/corpus/<target>/seed-*): the frames Python
easyrpc peers send (json and pickle envelopes, setup frames signed as PyJWT signs them), and
the attacks of RELIABILITY.md. `cargo fuzz run` grows the corpus from them; `cargo fuzz cmin`
keeps it small. Standard library only."""

import base64, hashlib, hmac, json, os, pickle, sys

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = b"fuzz-secret"  # harness.rs SECRET


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims, secret=SECRET, alg="HS256") -> str:
    head = b64(json.dumps({"typ": "JWT", "alg": alg}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def envelope(request, request_id="d2faa324", expected=True):
    return {"ws_action": {"type": "request", "response_expected": expected, "request": request, "request_id": request_id}}


REQUESTS = [
    {"action": "add", "args": [1], "kwargs": {"b": 5}},
    {"action": "kwfunc", "args": [1, 2, 9, 8], "kwargs": {"c": "z", "extra": 5}},
    {"action": "GENERATOR_NEXT", "generator_id": "g1"},
    {"action": "get_registered_functions"},
    {"action": "echo", "args": [{"nested": [1.5, None, True, "s\u00e9"], "big": 2**70, "neg": -(2**100)}]},
    {"action": "echo", "args": [[float("nan"), float("inf"), -0.0, 1e300]]},
    {"action": "__easyrpc_deploy__", "kwargs": {"namespace": "n", "name": "m", "wasm": "AGFzbQ=="}},
]


def write(target, name, data: bytes):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"seed-{name}"), "wb") as f:
        f.write(data)


def main():
    claims = {"type": "PROXY", "id": "d2f7053e-e78f-11f1-a490-02fc00000001", "namespace": "tenant", "serialization": "json"}
    setups = {
        "tenant": jwt(claims),
        "pickle": jwt(dict(claims, serialization="pickle", easyrpc_notify=True)),
        "expired": jwt(dict(claims, exp=86400)),
        "nbf": jwt(dict(claims, nbf=4102444800)),
        "wrong-secret": jwt(claims, secret=b"other"),
        "other-namespace": jwt(dict(claims, namespace="other")),
        "none-alg": b64(b'{"typ":"JWT","alg":"none"}') + "." + b64(json.dumps(claims).encode()) + ".",
        "many-claims": jwt(dict(claims, **{f"k{i}": i for i in range(200)})),
        "wrapped": jwt({"data": REQUESTS[0]}),
    }
    for name, token in setups.items():
        write("setup", name, json.dumps({"setup": token}).encode())
    write("setup", "many-keys", ("{" + "".join(f'"k{i}":0,' for i in range(300)) + f'"setup":"{setups["tenant"]}"' + "}").encode())
    write("setup", "not-a-token", b'{"setup": "a.b.c"}')

    for i, request in enumerate(REQUESTS):
        write("json", f"request-{i}", json.dumps(envelope(request)).encode())
        write("pickle", f"request-{i}", pickle.dumps(envelope(request)))
        write("pickle", f"request-{i}-p2", pickle.dumps(envelope(request), protocol=2))
        write("pickle", f"request-{i}-p0", pickle.dumps(envelope(request), protocol=0))
    responses = [
        {"ws_action": {"type": "response", "response": 6, "request_id": "abc"}},
        {"ws_action": {"type": "response", "response": {"GENERATOR_START": "r"}, "request_id": "r"}},
        {"ws_action": {"type": "response", "response": "E('x')", "request_id": "abc", "error": True}},
        {"ws_action": {"type": "notice", "notice": "functions_changed"}},
        {"ping": "ping"},
    ]
    for i, response in enumerate(responses):
        write("json", f"frame-{i}", json.dumps(response).encode())
        write("pickle", f"frame-{i}", pickle.dumps(response))
    listing = {"add": {"args": {"a": "<class 'int'>", "b": "<class 'int'>"}, "sig": "(a: int, b: int = 2) -> int"}}
    write("json", "listing", json.dumps(listing).encode())
    write("json", "deep", b"[" * 600 + b"]" * 600)
    write("json", "python-dialect", b'{"a": NaN, "b": -Infinity, "c": 1180591620717411303424, "d": "\\ud83d\\ude00 \\ud800"}')
    shared = ["x" * 100]
    write("pickle", "shared", pickle.dumps(envelope({"action": "echo", "args": [shared * 50, shared]})))
    write("pickle", "sets-tuples", pickle.dumps(envelope({"action": "echo", "args": [(1, "a"), {2}, frozenset([3]), {1: "one", None: 2, 1.5: 3}]})))
    write("pickle", "object", pickle.dumps(envelope({"action": "echo", "args": [object]})))
    write("pickle", "bytes", pickle.dumps(envelope({"action": "echo", "args": [b"\x00\xff" * 300, bytearray(b"ab")]})))
    dup = bytearray(b"\x80\x04N")
    for _ in range(24):
        dup += b"2\x86"
    write("pickle", "dup-bomb", bytes(dup) + b".")
    write("pickle", "long4", b"\x80\x04\x8b" + (3000).to_bytes(4, "little") + b"\x11" * 3000 + b".")
    # Found by fuzzing: an 18-byte LONG1 whose value fits i128 decoded as digits, not an int.
    write("pickle", "found-long1-fits-i128", b'\x80\x04N2\x862\x86}\x8c\x04type\x94\x8a\x12r\x88e\x88\x132\x882\x86\x86eq\x88\x88\x00\x11\x00\x00q\x86\x8622\x86\x86.')
    # Found by fuzzing: 600 bytes doubled through the memo, slow to print as JSON.
    write("pickle", "found-shared-bytes", b"\x80\x04B" + (600).to_bytes(4, "little") + b"\xff\x00" * 300 + b"2\x86" * 12 + b".")

    values = [
        (0, "true"), (2, "255"), (7, "-9223372036854775808"), (8, "18446744073709551615"), (10, "1.5"),
        (11, '"\u00e9"'), (12, '"text"'), (13, '{"any": [1, null]}'), (14, "[0, 1, 255]"), (15, "[[1], [2, 3]]"),
        (16, '{"x_pos": 1, "label": "p"}'), (16, '{"x-pos": 1}'), (17, '["s", 1.5, null]'), (18, '{"poly_line": [{"x_pos": 1}]}'),
        (18, '"dot"'), (18, '{"circle": 2.0}'), (19, '"dark_blue"'), (20, '{"some": null}'), (21, '{"some": "dot"}'),
        (22, '{"ok": {"x_pos": 3}}'), (22, '{"err": "bad"}'), (23, '{"ok": null}'), (24, '["read", "write_all"]'), (25, "1"),
        (0, '{"args": [1, "b", 3, 4], "kwargs": {"only": true, "z": 1}}'), (0, '{"args": [], "kwargs": {"a": 1, "a": 2}}'),
    ]
    for i, (pick, text) in enumerate(values):
        write("convert", f"value-{i}", bytes([pick]) + text.encode())


if __name__ == "__main__":
    sys.exit(main())
