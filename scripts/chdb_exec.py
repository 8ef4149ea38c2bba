#!/usr/bin/env python3
"""Runs SQL on the current ClickHouse engine embedded by PyPI's chdb.

The local server is Debian's ClickHouse 18.16; users run current servers.
Go tests pipe every migration and dashboard query through this helper so SQL
that current servers reject fails the build.

stdin:  {"dir": "<scratch dir>", "stop_on_error": true,
         "statements": [{"sql": "...", "format": "JSONCompact"}]}
stdout: [{"ok": true, "output": "..."} | {"ok": false, "error": "..."}]
"""
import json
import sys
import tempfile

from chdb import session


def main() -> int:
    req = json.load(sys.stdin)
    path = req.get("dir") or tempfile.mkdtemp(prefix="chdb-")
    sess = session.Session(path)
    out = []
    for st in req.get("statements", []):
        try:
            res = sess.query(st["sql"], st.get("format") or "CSV")
            out.append({"ok": True, "output": res.bytes().decode("utf-8", "replace") if res is not None else ""})
        except Exception as exc:  # chdb raises RuntimeError with the server message
            out.append({"ok": False, "error": str(exc)})
            if req.get("stop_on_error", True):
                break
    sess.close()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
