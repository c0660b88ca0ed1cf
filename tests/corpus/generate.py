#!/usr/bin/env python3
"""Writes tests/corpus/hostile.json, the hostile-input corpus that tests/corpus.rs replays.

The JSON is the corpus (reviewed and committed); this script only saves typing it by hand.
Run it after editing and commit both. Every case names the status the documentation promises:
  200  valid request, stored (hostile names are made safe, never refused)
  400  invalid request (fatal for resumable.js), 405 method, 204 OPTIONS
  415  policy refusal (too large), 422 body shorter/longer than declared or truncated multipart

String fields (query, content_type, body) are a string or a list of segments: a string, or
{"repeat": s, "times": n} for long inputs, or {"b64": "..."} for raw bytes. tus and blueimp
cases also carry "headers" ([name, value] pairs, sent as HTTP_* variables) and "path_info";
for them 201 (tus creation) and 204 (tus PATCH) are stored too, 404 an unknown upload, 409 a
range that does not start where the stored bytes end, 412 no tus version, 413 over a length.
"""

import base64
import json
import os
from urllib.parse import quote

CASES = []


def case(name, expect, query="", method="POST", content_type="application/octet-stream",
         body="hello", **extra):
    c = {"name": name, "method": method, "query": query, "content_type": content_type,
         "body": body, "expect": expect}
    c.update(extra)
    CASES.append(c)


def rep(s, n):
    return {"repeat": s, "times": n}


def params(prefix="resumable", **over):
    """A valid one-chunk, 5-byte upload; `over` replaces or (value None) removes fields."""
    fields = {"ChunkNumber": "1", "ChunkSize": "1048576", "CurrentChunkSize": "5",
              "TotalSize": "5", "Identifier": "5-hello", "Filename": "hello.txt",
              "RelativePath": "hello.txt", "TotalChunks": "1"}
    fields.update(over)
    out = []
    for field, value in fields.items():
        if value is None:
            continue
        name = prefix + field if prefix else field[0].lower() + field[1:]
        out.append((name, value))
    return out


def q(pairs, raw=None):
    """Encodes pairs; `raw` maps a field to an already-encoded value (kept as is)."""
    raw = raw or {}
    parts = []
    for name, value in pairs:
        short = name.replace("resumable", "").replace("flow", "")
        short = short[0].upper() + short[1:]
        if short in raw:
            parts.append(f"{name}={raw[short]}")
        else:
            parts.append(f"{name}={quote(value, safe='')}")
    return "&".join(parts)


def multipart(fields, file=b"hello", boundary="B0undary", filename="hello.txt", after=None,
              file_first=False, field="file"):
    out = b""
    pieces = []
    for name, value in fields:
        pieces.append(b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\""
                      + name.encode() + b"\"\r\n\r\n" + value.encode("utf-8", "surrogateescape")
                      + b"\r\n")
    if file is not None:
        filepart = (b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; name=\""
                    + field.encode() + b"\";"
                    b" filename=\"" + filename.encode("utf-8", "surrogateescape")
                    + b"\"\r\nContent-Type: application/octet-stream"
                    b"\r\n\r\n" + file + b"\r\n")
        if file_first:
            pieces.insert(0, filepart)
        else:
            pieces.append(filepart)
    out = b"".join(pieces)
    if after:
        out += after
    out += b"--" + boundary.encode() + b"--\r\n"
    return out


HOLE = b"\x00HOLE\x00"


def b64(data, fill=None):
    """Raw bytes; each HOLE in them becomes `fill`, a {"repeat"} segment (keeps the file small)."""
    out = []
    for i, piece in enumerate(data.split(HOLE)):
        if i:
            out.append(fill)
        out.append({"b64": base64.b64encode(piece).decode()})
    return out


MP = "multipart/form-data; boundary=B0undary"

# --- Hostile names: identifier, filename and relative path. Made safe, stored: 200. ---
NAMES = {
    "dotdot": "..",
    "dot": ".",
    "dotdot-slash": "../x",
    "deep-traversal": "../../../../../../etc/passwd",
    "absolute": "/etc/passwd",
    "absolute-dir": "/tmp/",
    "inner-traversal": "a/../../b",
    "backslash-traversal": "..\\..\\windows\\win.ini",
    "backslash-absolute": "C:\\Windows\\system32",
    "unc": "\\\\server\\share\\x",
    "nul-inside": "a\x00b",
    "nul-then-traversal": "x\x00/../../y",
    "newline": "a\nb",
    "cr-lf": "a\r\nSet-Cookie: x=1",
    "tab": "a\tb",
    "escape": "a\x1b[31mred",
    "del": "a\x7fb",
    "all-controls": "".join(chr(i) for i in range(1, 32)),
    "encoded-dots-literal": "%2e%2e%2f%2e%2e%2fetc",
    "double-encoded": "%252e%252e%252f",
    "fullwidth-dots": "\uff0e\uff0e\uff0fetc",
    "two-dot-leader": "\u2025/x",
    "one-dot-leader": "\u2024\u2024/x",
    "division-slash": "..\u2215..\u2215etc",
    "fraction-slash": "..\u2044x",
    "big-solidus": "..\u29f8x",
    "rtl-override": "txt.\u202eexe",
    "zero-width": "a\u200bb\ufeff",
    "combining-dot": ".\u0307.",
    "hidden": ".htaccess",
    "hidden-deep": "a/.ssh/authorized_keys",
    "only-dots": "....",
    "spaces": "   ",
    "dot-space": ". .",
    "trailing-dot-space": "name. ",
    "con": "CON",
    "nul-device": "NUL.txt",
    "com1": "COM1",
    "lpt9": "lpt9.log",
    "aux-lower": "aux",
    "prn-ext": "PRN.tar.gz",
    "colon-stream": "file.txt::$DATA",
    "wildcards": "*?<>|\"",
    "tilde": "~",
    "tilde-user": "~root/.bashrc",
    "home-like": "~id-0000",
    "emoji": "\U0001f600.txt",
    "name-255": "n" * 255,
    "name-256": "n" * 256,
    "name-300-utf8": "\u00e9" * 300,
    "path-4096": ("d" * 200 + "/") * 20,
    "slashes": "////",
    "dot-slash-repeat": "./" * 100 + "x",
    "question-hash": "a?b#c",
    "percent": "100%",
}

for field in ["Identifier", "Filename", "RelativePath"]:
    for label, value in NAMES.items():
        if field == "Identifier" and label == "path-4096":
            pass
        # An all-blank identifier or file name is still a non-empty value: accepted.
        case(f"{field.lower()}-{label}", 200, query=q(params(**{field: value})))
    # Percent-encoded forms of the same attacks (the server decodes once).
    for label, raw in {
        "pct-dotdot-slash": "%2e%2e%2f%2e%2e%2fetc",
        "pct-upper": "%2E%2E%5C%2E%2E%5Cetc",
        "pct-nul": "a%00b",
        "pct-overlong-utf8-dot": "%c0%ae%c0%ae%c0%af",
        "pct-invalid-utf8": "%ff%fe%fd",
        "pct-lone-surrogate": "%ed%a0%80",
        "pct-broken-escape": "%zz%2",
        "plus-as-space": "a+b",
    }.items():
        case(f"{field.lower()}-{label}", 200, query=q(params(), raw={field: raw}))
    # Longer than any parameter may be (past PATH_MAX): refused, never truncated.
    case(f"{field.lower()}-over-4096", 400, query=[q(params(**{field: None})) + f"&resumable{field}=",
                                                    rep("x", 4097)])
    case(f"{field.lower()}-past-path-max", 400, query=[q(params(**{field: None})) + f"&resumable{field}=",
                                                       rep("../", 2000)])

case("identifier-empty", 400, query=q(params(Identifier="")))
case("filename-empty", 400, query=q(params(Filename="")))
case("relativepath-empty-is-absent", 200, query=q(params(RelativePath="")))
case("identifier-missing", 400, query=q(params(Identifier=None)))
case("filename-missing", 400, query=q(params(Filename=None)))

# --- Numeric abuse, every numeric field. ---
BAD_NUMBERS = {
    "negative": "-1", "plus": "+5", "float": "5.0", "exp": "5e0", "hex": "0x5", "octal-o": "0o5",
    "empty": "", "space": " 5", "trailing-space": "5 ", "u64-overflow": "18446744073709551616",
    "huge": "9" * 40, "nan": "NaN", "infinity": "Infinity", "comma": "5,0", "arabic-digit": "\u0665",
    "fullwidth-digit": "\uff15", "nul": "5\x00", "letters": "five", "underscore": "5_0",
}
for field in ["ChunkNumber", "ChunkSize", "CurrentChunkSize", "TotalSize", "TotalChunks"]:
    for label, value in BAD_NUMBERS.items():
        case(f"{field.lower()}-{label}", 400, query=q(params(**{field: value})))
    case(f"{field.lower()}-leading-zeros", 200, query=q(params(**{field: "0000" + params()[[n for n, _ in params()].index("resumable" + field)][1]})))
for field in ["ChunkNumber", "ChunkSize", "CurrentChunkSize", "TotalSize"]:
    case(f"{field.lower()}-missing", 400, query=q(params(**{field: None})))
case("totalchunks-missing-is-fine", 200, query=q(params(TotalChunks=None)))

# --- Geometry that lies. ---
case("chunk-zero", 400, query=q(params(ChunkNumber="0")))
case("chunk-size-zero", 400, query=q(params(ChunkSize="0")))
case("chunk-past-end", 400, query=q(params(ChunkNumber="2")))
case("chunk-far-past-end", 400, query=q(params(ChunkNumber="18446744073709551615")))
case("start-overflows", 400, query=q(params(ChunkNumber="18446744073709551615", ChunkSize="18446744073709551615")))
case("end-past-total", 400, query=q(params(CurrentChunkSize="6")), body="hello!")
case("end-overflows", 400, query=q(params(ChunkNumber="2", ChunkSize="2", CurrentChunkSize="18446744073709551615", TotalSize="5")))
case("short-inner-chunk", 400, query=q(params(ChunkSize="2", CurrentChunkSize="1", TotalSize="5")), body="h")
case("oversized-last-chunk", 400, query=q(params(ChunkSize="2")))
case("total-chunks-contradicts", 400, query=q(params(TotalChunks="0")))
case("total-chunks-too-small-tolerated", 200, query=q(params(ChunkSize="2", CurrentChunkSize="2", TotalSize="5", TotalChunks="1")), body="he")
case("zero-byte-file", 200, query=q(params(CurrentChunkSize="0", TotalSize="0")), body="")
case("zero-size-inner", 400, query=q(params(CurrentChunkSize="0")), body="")
case("body-shorter-than-declared", 422, query=q(params()), body="hell")
case("body-empty-declared-5", 422, query=q(params()), body="")
case("body-longer-than-declared", 422, query=q(params()), body="hello, world")
case("file-over-max", 415, query=q(params(TotalSize="20000000000", ChunkSize="20000000000", CurrentChunkSize="20000000000")))
case("everything-u64-max", 400, query=q(params(TotalSize="18446744073709551615", ChunkSize="18446744073709551615", CurrentChunkSize="18446744073709551615")))
case("chunk-size-over-max", 415, query=q(params(ChunkSize="1099511627776", CurrentChunkSize="5", TotalSize="5")))
case("test-get-over-max", 415, method="GET", body="", query=q(params(TotalSize="20000000000", ChunkSize="1048576", CurrentChunkSize="1048576")))
case("content-length-over-max", 415, query=q(params()), content_length="999999999999")
case("content-length-garbage", 200, query=q(params()), content_length="lots")
case("content-length-negative", 200, query=q(params()), content_length="-5")
# The chunk carried its declared 5 bytes; CGI cannot tell a short CONTENT_LENGTH apart.
case("content-length-longer-than-body", 200, query=q(params()), content_length="50")

# --- Methods, dialects, query oddities. ---
case("method-delete", 405, method="DELETE", query=q(params()))
case("method-trace", 405, method="TRACE", query=q(params()))
case("method-lowercase-post", 405, method="post", query=q(params()))
case("method-options", 204, method="OPTIONS", body="")
case("method-empty-is-get", 400, method="", body="", query="")
case("get-missing", 204, method="GET", body="", query=q(params(Identifier="never-uploaded")))
case("head-missing", 204, method="HEAD", body="", query=q(params(Identifier="never-uploaded")))
case("no-query", 400, query="")
case("junk-query", 400, query="&&&==&=&%&%%")
case("only-equals", 400, query="=")
case("conflicting-repeat", 400, query=q(params()) + "&resumableChunkNumber=2")
case("agreeing-repeat", 200, query=q(params()) + "&resumableChunkNumber=1")
case("two-dialects-resumable-wins", 400, query="resumableIdentifier=x&" + q(params(prefix="flow", Identifier=None)))
case("flow-octet-put", 200, method="PUT", content_type=None, query=q(params(prefix="flow")))
case("unprefixed", 200, query=q(params(prefix="")))
case("param-name-encoded", 200, query=q(params(Identifier=None)) + "&resumable%49dentifier=5-hello")
case("thousands-of-params", 200, query=[q(params()), rep("&junk=1", 5000)])
case("huge-unknown-param", 200, query=[q(params()) + "&junk=", rep("A", 100000)])

# --- Multipart: malformed and oversized. ---
R = params()
case("mp-valid", 200, content_type=MP, body=b64(multipart(R)))
case("mp-no-boundary", 400, content_type="multipart/form-data", body=b64(multipart(R)))
case("mp-empty-boundary", 400, content_type="multipart/form-data; boundary=", body=b64(multipart(R)))
case("mp-boundary-mismatch", 422, content_type="multipart/form-data; boundary=Other", body=b64(multipart(R)))
case("mp-empty-body", 422, content_type=MP, body="")
case("mp-quoted-boundary", 200, content_type='multipart/form-data; boundary="B0undary"', body=b64(multipart(R)))
case("mp-case-insensitive-type", 200, content_type="Multipart/Form-Data; boundary=B0undary", body=b64(multipart(R)))
case("mp-truncated-in-file", 422, content_type=MP, body=b64(multipart(R)[:-30]))
case("mp-truncated-in-headers", 422, content_type=MP, body=b64(multipart(R)[:40]))
case("mp-no-closing-boundary", 422, content_type=MP, body=b64(multipart(R)[:-len("--B0undary--\r\n")]))
case("mp-file-shorter", 422, content_type=MP, body=b64(multipart(R, file=b"hell")))
case("mp-file-longer", 422, content_type=MP, body=b64(multipart(R, file=b"hello world")))
case("mp-part-after-file", 400, content_type=MP, body=b64(multipart(R, after=b"--B0undary\r\nContent-Disposition: form-data; name=\"late\"\r\n\r\n1\r\n")))
case("mp-two-file-parts", 400, content_type=MP, body=b64(multipart(R, after=b"--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nhello\r\n")))
case("mp-no-file-part-is-test", 204, content_type=MP, body=b64(multipart(params(Identifier="nofile"), file=None)))
case("mp-flow-file-first", 400, content_type=MP, body=b64(multipart(params(prefix="flow"), file_first=True)))
# The file part must be the last part.
case("mp-resumable-file-first-query-has-params", 400, query=q(R), content_type=MP, body=b64(multipart(R, file_first=True)))
case("mp-duplicate-field-agreeing", 200, content_type=MP, body=b64(multipart(R + [("resumableChunkNumber", "1")])))
case("mp-duplicate-field-conflicting", 400, content_type=MP, body=b64(multipart(R + [("resumableChunkNumber", "2")])))
case("mp-query-form-conflict", 400, query=q(params(Identifier="other")), content_type=MP, body=b64(multipart(R)))
case("mp-field-without-name", 200, content_type=MP, body=b64(multipart(R).replace(b"--B0undary\r\n", b"--B0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B0undary\r\n", 1)))
case("mp-non-utf8-field", 200, content_type=MP, body=b64(multipart(params(Filename="a\udcffb.txt"))))
case("mp-lf-only", 422, content_type=MP, body=b64(multipart(R).replace(b"\r\n", b"\n")))
case("mp-huge-part-header", 400, content_type=MP, body=b64(multipart(R).replace(b"Content-Disposition: form-data; name=\"file\"", b"X-Junk: " + HOLE + b"\r\nContent-Disposition: form-data; name=\"file\""), rep("j", 2000000)))
# Headers, fields and preamble together may hold at most 1 MiB (MAX_FRAMING): within it, fine.
case("mp-large-part-header-within-bound", 200, content_type=MP, body=b64(multipart(R).replace(b"Content-Disposition: form-data; name=\"file\"", b"X-Junk: " + HOLE + b"\r\nContent-Disposition: form-data; name=\"file\""), rep("j", 100000)))
case("mp-huge-preamble", 400, content_type=MP, body=b64(HOLE + multipart(R), rep("preamble ", 400000)))
case("mp-many-part-headers", 400, content_type=MP, body=b64(multipart(R).replace(b"Content-Disposition: form-data; name=\"file\"", b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"Content-Disposition: form-data; name=\"file\"")))
case("mp-oversized-text-field", 400, content_type=MP, body=b64(multipart(R + [("junk", "\x00HOLE\x00")]), rep("j", 70000)))
case("mp-many-small-parts", 400, content_type=MP, body=b64(HOLE + multipart(R), rep("--B0undary\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n1\r\n", 5000)))
case("mp-some-extra-parts", 200, content_type=MP, body=b64(multipart([("junk%d" % i, "1") for i in range(20)] + R)))
# A part's own Content-Type is not interpreted: the bytes are the chunk.
case("mp-nested-multipart", 200, content_type=MP, body=b64(multipart(R).replace(b"Content-Type: application/octet-stream", b"Content-Type: multipart/mixed; boundary=B0undary")))
case("mp-filename-traversal-in-part", 200, content_type=MP, body=b64(multipart(R, filename="../../etc/passwd")))
case("mp-boundary-in-data", 422, content_type=MP, body=b64(multipart(R, file=b"he\r\n--B0undary--\r\nllo")))
case("mp-garbage-before-first-boundary", 200, content_type=MP, body=b64(b"preamble junk\r\n" + multipart(R)))
case("mp-mixed-type-is-not-form", 422, content_type="multipart/mixed; boundary=B0undary", query=q(R), body=b64(multipart(R)))
case("mp-binary-garbage", 422, content_type=MP, body=b64(bytes(range(256)) * 8))

# resumable.js's nine fields plus the page's own, then a 5 MiB file part arriving in 64 KiB
# reads: multer's read-ahead is file data, not headers (a false 400 once, see git log).
BIG = 5 << 20
case("mp-eleven-fields-then-5-mib", 200, content_type=MP,
     body=b64(multipart(params(ChunkSize=str(BIG), CurrentChunkSize=str(BIG), TotalSize=str(BIG),
                               Identifier="big", Filename="big.bin", RelativePath="big.bin")
                        + [("resumableType", "application/octet-stream"), ("page", "1"), ("token", "x")],
                        file=HOLE), rep("z", BIG)))

# --- The other clients' fields: Dropzone, Fine Uploader, Plupload (a valid 5-byte file each). ---
def fields(base, over):
    out = dict(base)
    out.update(over)
    return [(k, v) for k, v in out.items() if v is not None]


def dz(**over):
    return fields({"dzuuid": "dz-hello", "dzchunkindex": "0", "dztotalfilesize": "5",
                   "dzchunksize": "1048576", "dztotalchunkcount": "1", "dzchunkbyteoffset": "0"}, over)


def fu(**over):
    return fields({"qqpartindex": "0", "qqpartbyteoffset": "0", "qqchunksize": "5", "qqtotalparts": "1",
                   "qqtotalfilesize": "5", "qqfilename": "hello.txt", "qquuid": "fu-hello"}, over)


def pl(**over):
    return fields({"name": "hello.txt", "chunk": "0", "chunks": "1"}, over)


def qs(pairs):
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs)


# Names every field of theirs that reaches the store gets (a subset of NAMES).
DIALECT_NAMES = ["dotdot", "dot", "deep-traversal", "absolute", "inner-traversal",
                 "backslash-traversal", "unc", "nul-inside", "cr-lf", "all-controls",
                 "encoded-dots-literal", "fullwidth-dots", "hidden", "con", "name-256",
                 "name-300-utf8", "path-4096", "slashes", "tilde", "rtl-override"]
for label in DIALECT_NAMES:
    value = NAMES[label]
    case(f"dzuuid-{label}", 200, content_type=MP, body=b64(multipart(dz(dzuuid=value))))
    case(f"qquuid-{label}", 200, query=qs(fu(qquuid=value)))
    case(f"qqfilename-{label}", 200, query=qs(fu(qqfilename=value, qquuid="fu-" + label)))
    case(f"plupload-name-{label}", 200, query=qs(pl(name=value)))
    case(f"plupload-mp-name-{label}", 200, content_type=MP,
         body=b64(multipart(pl(name=value + "-mp"), filename="blob")))
# Dropzone's file name is the file part's: whatever a header can carry (no CR, LF or quote).
for label in DIALECT_NAMES:
    value = NAMES[label]
    if any(c in value for c in "\r\n\"\x00"):
        continue
    case(f"dz-filename-{label}", 200, content_type=MP,
         body=b64(multipart(dz(dzuuid="dzf-" + label), filename=value)))
case("dz-filename-missing", 400, content_type=MP,
     body=b64(multipart(dz()).replace(b'; filename="hello.txt"', b"")))
case("dz-filename-empty", 400, content_type=MP, body=b64(multipart(dz(), filename="")))
case("qqfilename-empty-part-named", 200, content_type=MP,
     body=b64(multipart(fu(qqfilename=None, qquuid="fu-part-named"), field="qqfile")))

NUMBERS = {"negative": "-1", "float": "1.0", "hex": "0x1", "empty": "", "u64-overflow": "18446744073709551616",
           "huge": "9" * 40}
for field in ["dzchunkindex", "dztotalfilesize", "dzchunksize", "dztotalchunkcount", "dzchunkbyteoffset"]:
    for label, value in NUMBERS.items():
        case(f"{field}-{label}", 400, content_type=MP, body=b64(multipart(dz(**{field: value}))))
    case(f"{field}-missing", 400, content_type=MP, body=b64(multipart(dz(**{field: None}))))
for field in ["qqpartindex", "qqpartbyteoffset", "qqchunksize", "qqtotalparts", "qqtotalfilesize"]:
    for label, value in NUMBERS.items():
        case(f"{field}-{label}", 400, query=qs(fu(**{field: value})))
for field in ["chunk", "chunks"]:
    for label, value in NUMBERS.items():
        case(f"plupload-{field}-{label}", 400, query=qs(pl(**{field: value})))

# Lying offsets, counts and totals; huge indices; the limits.
U64 = "18446744073709551615"
case("dz-offset-lies", 400, content_type=MP, body=b64(multipart(dz(dzchunkbyteoffset="1"))))
case("dz-index-at-count", 400, content_type=MP, body=b64(multipart(dz(dzchunkindex="1", dzchunkbyteoffset="1048576"))))
case("dz-index-u64", 400, content_type=MP, body=b64(multipart(dz(dzchunkindex=U64, dztotalchunkcount=U64))))
case("dz-count-zero", 400, content_type=MP, body=b64(multipart(dz(dztotalchunkcount="0"))))
case("dz-chunk-size-zero", 400, content_type=MP, body=b64(multipart(dz(dzchunksize="0"))))
case("dz-inner-chunk-short", 400, content_type=MP, body=b64(multipart(dz(dzchunksize="10", dztotalchunkcount="2"))))
case("dz-last-chunk-longer", 400, content_type=MP, body=b64(multipart(dz(dzchunksize="4"))))
case("dz-last-chunk-empty", 400, content_type=MP,
     body=b64(multipart(dz(dzchunkindex="1", dzchunksize="5", dzchunkbyteoffset="5", dztotalchunkcount="2"), file=b"")))
case("dz-count-over-max-file", 415, content_type=MP, body=b64(multipart(dz(dztotalchunkcount="99999999999", dzchunksize="1048576"))))
case("dz-count-u64-overflows", 415, content_type=MP, body=b64(multipart(dz(dztotalchunkcount=U64, dzchunksize="1048576"))))
case("dz-chunk-size-over-max", 415, content_type=MP, body=b64(multipart(dz(dzchunksize="1099511627776"))))
case("dz-total-lies-tolerated", 200, content_type=MP, body=b64(multipart(dz(dzuuid="dz-lying-total", dztotalfilesize="999"))))
# Dropzone names its file only in the file part: a raw body (binaryBody sends no fields) has none.
case("dz-raw-body-has-no-file-name", 400, query=qs(dz(dzuuid="dz-octet")))
case("dz-get-is-no-test", 400, method="GET", body="", query=qs(dz()))
case("fu-offset-not-a-multiple", 400, query=qs(fu(qqpartindex="2", qqpartbyteoffset="5", qqtotalparts="3", qqtotalfilesize="15")))
case("fu-count-lies", 400, query=qs(fu(qqtotalparts="2")))
case("fu-total-lies", 400, query=qs(fu(qqtotalfilesize="6")))
case("fu-part-size-lies", 422, query=qs(fu(qqchunksize="4", qqtotalfilesize="4")))
case("fu-index-u64", 400, query=qs(fu(qqpartindex=U64, qqtotalparts=U64)))
case("fu-over-max", 415, query=qs(fu(qqtotalfilesize="20000000000", qqchunksize="20000000000")))
case("fu-unchunked", 200, query=qs([("qquuid", "fu-whole"), ("qqfilename", "whole.txt"), ("qqtotalfilesize", "5")]))
case("fu-unchunked-size-lies", 422, query=qs([("qquuid", "fu-whole2"), ("qqfilename", "w.txt"), ("qqtotalfilesize", "6")]))
case("fu-finish-nothing-stored", 409, content_type="application/x-www-form-urlencoded",
     body=qs([("qquuid", "fu-never"), ("qqfilename", "n.txt"), ("qqtotalfilesize", "5"), ("qqtotalparts", "1")]))
case("fu-finish-count-u64", 409, content_type="application/x-www-form-urlencoded",
     body=qs([("qquuid", "fu-never2"), ("qqfilename", "n.txt"), ("qqtotalfilesize", "5"), ("qqtotalparts", U64)]))
case("fu-finish-over-max", 415, content_type="application/x-www-form-urlencoded",
     body=qs([("qquuid", "fu-never3"), ("qqfilename", "n.txt"), ("qqtotalfilesize", "20000000000"), ("qqtotalparts", "1")]))
case("fu-finish-huge-body", 415, content_type="application/x-www-form-urlencoded",
     body=[qs([("qquuid", "fu-never4"), ("qqtotalparts", "1")]) + "&junk=", rep("j", 70000)])
case("fu-finish-with-file", 400, query=qs([("qquuid", "fu-f"), ("qqfilename", "n.txt"), ("qqtotalfilesize", "5"), ("qqtotalparts", "1")]),
     content_type=MP, body=b64(multipart([], field="qqfile", filename="blob")))
case("fu-resume-of-nothing", 409, query=qs(fu(qqpartindex="1", qqpartbyteoffset="5", qqchunksize="5", qqtotalparts="2",
                                                qqtotalfilesize="10", qquuid="fu-gone") + [("qqresume", "true")]))
case("plupload-chunk-at-count", 400, query=qs(pl(chunk="1")))
# An empty file is chunk 0 of 0 (Plupload counts ceil(size / chunk_size) chunks): empty only.
case("plupload-chunks-zero-empty-file", 200, query=qs(pl(name="zero.txt", chunks="0")), body="")
case("plupload-chunks-zero-not-empty", 400, query=qs(pl(name="zero2.txt", chunks="0")))
case("plupload-chunk-u64", 400, query=qs(pl(chunk=U64, chunks=U64)))
case("plupload-before-chunk-0", 400, query=qs(pl(name="never-began.txt", chunk="1", chunks="3")))
case("plupload-last-before-chunk-0", 400, query=qs(pl(name="never-began2.txt", chunk="2", chunks="3")))
case("plupload-first-chunk-empty", 400, query=qs(pl(name="empty-first.txt", chunks="2")), body="")
case("plupload-empty-file", 200, query=qs(pl(name="empty.txt")), body="")
case("plupload-chunks-over-max-file", 415, query=qs(pl(name="many.txt", chunks="99999999999999")))
case("plupload-chunk-over-max-chunk", 415, query=qs(pl(name="big.txt")), content_length="999999999999")
case("plupload-get-is-no-test", 400, method="GET", body="", query=qs(pl()))
case("plupload-name-missing-is-no-plupload", 400, query=qs(pl(name=None)))
case("plupload-name-empty", 400, query=qs(pl(name="")))
case("plupload-with-chunknumber-is-unprefixed", 400, query=qs(pl(name="u.txt")) + "&chunkNumber=1")
# --- tus: creation, upload URLs, offsets and metadata. ---
def tus_case(name, expect, headers, method="POST", path_info=None, body="", content_type=None):
    version = [] if any(h[0] == "Tus-Resumable" for h in headers) else [["Tus-Resumable", "1.0.0"]]
    extra = {"headers": version + headers}
    if path_info is not None:
        extra["path_info"] = path_info
    case(name, expect, method=method, content_type=content_type, body=body, **extra)


def tus_meta(**pairs):
    return ",".join(f"{k} {base64.b64encode(v.encode('utf-8', 'surrogateescape')).decode()}"
                    for k, v in pairs.items())


def tus_create(name, expect, meta, body="hello", length="5"):
    tus_case(name, expect, [["Upload-Length", length], ["Upload-Metadata", meta]],
             body=body, content_type="application/offset+octet-stream")


ZERO_ID = "/" + "0" * 32
for key, value in NAMES.items():
    tus_create(f"tus-filename-{key}", 201, tus_meta(filename=value))
tus_create("tus-relativepath-traversal", 201, tus_meta(filename="x.txt", relativePath="../../../tus-etc/x.txt"))
tus_create("tus-relativepath-absolute", 201, tus_meta(filename="x.txt", relativePath="/tus-etc/cron.d/x.txt"))
tus_create("tus-name-key-traversal", 201, tus_meta(name="../../.bashrc"))
tus_create("tus-metadata-not-base64", 400, "filename ../../etc/passwd")
tus_create("tus-metadata-bad-padding", 400, "filename aGVsbG8")
tus_create("tus-metadata-key-twice", 400, tus_meta(filename="a") + "," + tus_meta(filename="b"))
tus_create("tus-metadata-non-ascii-key", 400, "имя YQ==")
tus_create("tus-metadata-control-key", 400, "fi\x01le YQ==")
tus_create("tus-metadata-huge", 400, [tus_meta(filename="a") + ",x ", rep("QUFB", 5000)])
tus_create("tus-body-longer-than-length", 413, tus_meta(filename="a"), body="hello world")
for label, length, status in [("negative", "-1", 400), ("hex", "0x10", 400), ("fraction", "1.5", 400),
                              ("exponent", "1e9", 400), ("beyond-u64", "99999999999999999999", 400),
                              ("u64-max", "18446744073709551615", 413), ("over-max", "10737418241", 413),
                              ("empty", "", 400), ("spaces-inside", "1 2", 400)]:
    tus_case(f"tus-length-{label}", status, [["Upload-Length", length]])
tus_case("tus-no-length", 400, [])
tus_case("tus-defer-length", 400, [["Upload-Defer-Length", "1"]])
tus_case("tus-concat-final", 400, [["Upload-Length", "5"], ["Upload-Concat", "final;/a /b"]])
tus_case("tus-version-other", 412, [["Tus-Resumable", "0.2.2"], ["Upload-Length", "5"]])
tus_case("tus-checksum-unsupported", 400, [["Upload-Length", "5"], ["Upload-Checksum", "md5 XUFAKrxLKna5cZ2REBfFkg=="]],
         body="hello", content_type="application/offset+octet-stream")
tus_case("tus-override-trace", 405, [["X-HTTP-Method-Override", "TRACE"]])
for label, offset, status in [("negative", "-1", 400), ("fraction", "0.5", 400), ("hex", "0x0", 400),
                              ("beyond-u64", "99999999999999999999", 400), ("missing", None, 400),
                              ("valid-unknown-id", "0", 404)]:
    headers = [["Upload-Offset", offset]] if offset is not None else []
    tus_case(f"tus-offset-{label}", status, headers, method="PATCH", path_info=ZERO_ID,
             body="hello", content_type="application/offset+octet-stream")
tus_case("tus-patch-wrong-type", 415, [["Upload-Offset", "0"]], method="PATCH", path_info=ZERO_ID,
         body="hello", content_type="application/octet-stream")
for label, path in [("dotdot", "/.."), ("deep-traversal", "/../../etc/passwd"), ("encoded", "/%2e%2e%2fetc"),
                    ("double-slash", "//etc/passwd"), ("id-then-more", ZERO_ID + "/.."), ("upper-hex", "/" + "A" * 32),
                    ("short-id", "/abc"), ("long", "/" + "a" * 5000), ("backslash", "/..\\..\\x"),
                    ("newline", "/" + "0" * 31 + "\n")]:
    tus_case(f"tus-path-{label}-head", 404, [], method="HEAD", path_info=path, body="", content_type=None)
    tus_case(f"tus-path-{label}-delete", 404, [], method="DELETE", path_info=path, body="", content_type=None)
case("tus-upload-url-without-version", 412, method="HEAD", content_type=None, body="", path_info=ZERO_ID)
case("tus-patch-without-version", 412, method="PATCH", content_type="application/offset+octet-stream",
     body="hello")


# --- blueimp: Content-Range and Content-Disposition. ---
def blueimp_case(name, expect, filename="hello.txt", rng="bytes 0-4/5", body="hello", raw_name=None,
                 content_type="application/octet-stream"):
    headers = []
    if rng is not None:
        headers.append(["Content-Range", rng])
    if filename is not None or raw_name is not None:
        encoded = raw_name if raw_name is not None else quote(filename.encode("utf-8", "surrogateescape"), safe="")
        headers.append(["Content-Disposition", f'attachment; filename="{encoded}"'])
    case(name, expect, content_type=content_type, body=body, headers=headers)


for key, value in NAMES.items():
    blueimp_case(f"blueimp-name-{key}", 200, filename=value)
blueimp_case("blueimp-name-missing", 400, filename=None)
blueimp_case("blueimp-name-bad-escape", 400, raw_name="%zz")
blueimp_case("blueimp-name-not-utf8", 400, raw_name="%ff%fe")
blueimp_case("blueimp-name-huge", 400, raw_name="a" * 5000)
for label, rng, status in [("last-past-total", "bytes 0-5/5", 400), ("reversed", "bytes 4-0/5", 400),
                           ("negative", "bytes -1-4/5", 400), ("no-total", "bytes 0-4", 400),
                           ("star", "bytes */5", 400), ("other-unit", "items 0-4/5", 400),
                           ("beyond-u64", "bytes 0-4/99999999999999999999", 400),
                           ("u64-max-total", "bytes 0-4/18446744073709551615", 415),
                           ("gap-nothing-stored", "bytes 5-9/10", 409),
                           ("body-shorter", "bytes 0-5/6", 422), ("body-longer", "bytes 0-3/5", 422)]:
    blueimp_case(f"blueimp-range-{label}", status, rng=rng)
blueimp_case("blueimp-multipart-part-name-traversal", 200, content_type=MP,
             body=b64(multipart([], filename="../../etc/passwd")))

print(len(CASES), "cases")
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "hostile.json"), "w") as f:
    json.dump(CASES, f, indent=1, ensure_ascii=True)
    f.write("\n")
