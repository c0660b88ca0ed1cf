#!/usr/bin/env python3
"""resumable-cgi completion hook, in Python: RESUMABLE_ON_COMPLETE=/usr/local/lib/resumable-cgi/on-complete.py

resumable-cgi runs it once per finished file, after the file is assembled and synced and before
it gets its name in the upload directory, as the user the program runs as (www-data), without a
shell, in its own process group, for at most RESUMABLE_HOOK_TIMEOUT seconds (default 60).

In:  JSON on stdin: {"path": absolute path of the assembled file (read it, do not move it),
     "name": the path it will be published under, relative to the upload directory,
     "size", "identifier", "client" (resumable, flow, ...), "user" (REMOTE_USER or null),
     "metadata": the request's fields (what the page adds with resumable.js `query`, flow.js
     `query`, form fields, tus metadata)}. The same as RESUMABLE_HOOK_PATH, _NAME, _SIZE,
     _IDENTIFIER, _CLIENT, _USER, _METADATA; the RESUMABLE_* settings; the server's environment.
Out: exit 0 publishes the file; a JSON object on stdout reaches the page as "data" in the
     completion answer (resumable.js and flow.js fileSuccess, Dropzone success). Exit 75 means
     "try again later" (the client gets 503 and retries; the file waits). Any other exit refuses
     the file: it is deleted with its parts, and the client gets 415 with the first line this
     program wrote on stderr. A crash, a kill or a timeout is not a refusal: the client gets 503
     and the next request runs the hook again.

What this one does:
- checks the bytes: the sha256 of the file against the one the page computed, when it sent one
  (resumable.js `query: {sha256: ...}`);
- refuses by content: executables, whatever their name says (a virus scanner goes here, e.g.
  `clamdscan --no-summary --fdpass PATH`, exit 1 on a find);
- records the file in a JSON-lines journal when UPLOAD_JOURNAL names one (an application
  would insert a database row instead);
- answers the page with the sha256 and the URL the file will be served at (UPLOADS_URL, default
  /files/, plus the name). UPLOAD_JOURNAL and UPLOADS_URL come from the server's environment:
  Apache `SetEnv`, systemd `Environment=`, the spawn-fcgi script's exports.
"""
import hashlib
import json
import os
import sys
import urllib.parse

EXECUTABLE_MAGIC = (b"\x7fELF", b"MZ", b"#!")


def main():
    info = json.load(sys.stdin)
    digest = hashlib.sha256()
    with open(info["path"], "rb") as f:
        head = f.read(4)
        digest.update(head)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha256 = digest.hexdigest()

    if head.startswith(EXECUTABLE_MAGIC):
        print("executable files are not accepted", file=sys.stderr)
        return 1
    expected = str(info["metadata"].get("sha256", "")).lower()
    if expected and expected != sha256:
        print(f"checksum mismatch: the page sent {expected}, the server has {sha256}", file=sys.stderr)
        return 1

    url = os.environ.get("UPLOADS_URL", "/files/") + urllib.parse.quote(info["name"])
    journal = os.environ.get("UPLOAD_JOURNAL")
    if journal:
        entry = {"name": info["name"], "size": info["size"], "sha256": sha256, "user": info["user"]}
        with open(journal, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    print(f"accepted {info['name']} ({info['size']} bytes, sha256 {sha256})", file=sys.stderr)
    json.dump({"sha256": sha256, "url": url}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
