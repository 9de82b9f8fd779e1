#!/usr/bin/env python3
"""Stand-ins for the HTTP APIs of servers that cannot be installed on the test machines: Qdrant,
Vault and n8n. Each follows the published API for exactly the calls tierback makes (paths,
headers, status codes, JSON shapes); none of them is the real server.

    http_apis.py qdrant|vault|n8n --dir DIR [--key KEY] [--fault NAME]

Prints the port it listens on (127.0.0.1) as its first line. Every body it serves as a snapshot
or export is also written to DIR/served/<name>, so a test can compare what tierback stored.

- qdrant (https://api.qdrant.tech/api-reference): GET /, GET /collections, GET /collections/{c},
  POST|GET /collections/{c}/snapshots, GET|DELETE /collections/{c}/snapshots/{s}, and the same
  under /snapshots for full-storage snapshots. `api-key` header when --key is given. Snapshots
  are tar archives; the create call announces size and SHA-256 ("checksum").
  Faults: corrupt (a byte changes on the way, the announced checksum stays right), cut (the
  connection drops halfway through a download).
- vault (https://developer.hashicorp.com/vault/api-docs/system/storage/raftsnapshot):
  GET /v1/sys/storage/raft/snapshot with `X-Vault-Token`; a gzipped tar of meta.json, state.bin,
  SHA256SUMS and SHA256SUMS.sealed. Also KV v2 reads (GET /v1/secret/data/<path>) of the secrets
  in DIR/kv.json. Faults: bad-sums (SHA256SUMS does not match state.bin), midstream (a snapshot
  that failed midway: still HTTP 200, no SHA256SUMS.sealed).
- n8n (https://docs.n8n.io/api/api-reference/): GET /api/v1/workflows?limit=&cursor= with
  `X-N8N-API-KEY`, pages of `{"data": [...], "nextCursor": ...}`; this stand-in serves at most
  3 per page so that paging is exercised.
"""
import argparse, base64, gzip, hashlib, io, json, os, random, sys, tarfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs, unquote

args = None
lock = threading.Lock()
state = {"snapshots": {}}  # scope ("" = full) -> {name: bytes}
COLLECTIONS = {"documents": 1200, "embeddings": 300}
WORKFLOWS = [
    {"id": "wf%d" % i, "name": "workflow %d" % i, "active": i % 2 == 0,
     "nodes": [{"name": "Start", "type": "n8n-nodes-base.start", "position": [i, i]}],
     "connections": {}, "settings": {}, "createdAt": "2026-11-01T00:00:00.000Z"}
    for i in range(7)
]


def tar_bytes(files, gz=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1764200000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def qdrant_snapshot(scope):
    rng = random.Random(scope)
    names = [scope] if scope else list(COLLECTIONS)
    files = []
    for c in names:
        files.append(("%s/config.json" % c, json.dumps({"points": COLLECTIONS[c]}).encode()))
        files.append(("%s/segments/0/data.bin" % c, bytes(rng.getrandbits(8) for _ in range(300_000))))
    return tar_bytes(files)


def vault_snapshot():
    rng = random.Random(7)
    state_bin = bytes(rng.getrandbits(8) for _ in range(400_000))
    meta = json.dumps({"Version": 1, "ID": "2-1234-1764200000000", "Index": 1234, "Term": 2}).encode()
    sums = {"meta.json": hashlib.sha256(meta).hexdigest(), "state.bin": hashlib.sha256(state_bin).hexdigest()}
    if args.fault == "bad-sums":
        sums["state.bin"] = hashlib.sha256(b"other").hexdigest()
    lines = "".join("%s  %s\n" % (h, n) for n, h in sums.items()).encode()
    files = [("meta.json", meta), ("state.bin", state_bin), ("SHA256SUMS", lines)]
    # Vault seals the sums with its seal (an opaque blob here). When it fails midway through a
    # snapshot it still answers 200, and the sealed sums are what is missing.
    if args.fault != "midstream":
        files.append(("SHA256SUMS.sealed", hashlib.sha256(b"sealed:" + lines).digest()))
    return tar_bytes(files, gz=True)


def served(name, data):
    d = os.path.join(args.dir, "served")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        with open(os.path.join(args.dir, "requests.log"), "a") as f:
            f.write("%s %s\n" % (self.command, self.path))

    def send(self, status, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def route(self, method):
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        getattr(self, args.kind)(method, parts, parse_qs(url.query))

    # --- Qdrant ---
    def qdrant(self, method, parts, query):
        ok = lambda result: self.send(200, {"result": result, "status": "ok", "time": 0.001})
        if args.key and self.headers.get("api-key") != args.key:
            return self.send(401, b"Must provide an API key or an Authorization bearer token", "text/plain")
        if parts == [] and method == "GET":
            return self.send(200, {"title": "qdrant - vector search engine", "version": "1.12.4"})
        if parts == ["collections"]:
            return ok({"collections": [{"name": c} for c in COLLECTIONS]})
        if parts[:1] == ["collections"] and parts[1:2] and parts[1] not in COLLECTIONS:
            return self.send(404, {"status": {"error": "Not found: Collection `%s` doesn't exist!" % parts[1]}, "time": 0.0})
        if parts[:1] == ["collections"] and len(parts) == 2:
            return ok({"status": "green", "points_count": COLLECTIONS[parts[1]], "segments_count": 1})
        if parts[:1] == ["collections"] and parts[2:3] == ["snapshots"]:
            scope, rest = parts[1], parts[3:]
        elif parts[:1] == ["snapshots"]:
            scope, rest = "", parts[1:]
        else:
            return self.send(404, b"", "text/plain")
        with lock:
            snaps = state["snapshots"].setdefault(scope, {})
            if method == "POST" and not rest:
                data = qdrant_snapshot(scope)
                name = "%s-%d.snapshot" % (scope or "full-snapshot", time.time_ns())
                snaps[name] = data
                return ok({"name": name, "creation_time": "2026-11-27T02:00:00", "size": len(data),
                           "checksum": hashlib.sha256(data).hexdigest()})
            if method == "GET" and not rest:
                return ok([{"name": n, "size": len(d)} for n, d in snaps.items()])
            if not rest or rest[0] not in snaps:
                return self.send(404, {"status": {"error": "Snapshot not found"}, "time": 0.0})
            if method == "DELETE":
                del snaps[rest[0]]
                return ok(True)
            data = snaps[rest[0]]
        served(rest[0], data)
        if args.fault == "corrupt":
            data = data[:1000] + bytes([data[1000] ^ 1]) + data[1001:]
        if args.fault == "cut":
            # The connection drops mid-download: the announced length never arrives.
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        return self.send(200, data, "application/octet-stream")

    # --- Vault ---
    def vault(self, method, parts, query):
        if self.headers.get("X-Vault-Token") != args.key:
            return self.send(403, {"errors": ["permission denied"]})
        if parts == ["v1", "sys", "storage", "raft", "snapshot"] and method == "GET":
            data = vault_snapshot()
            served("snapshot.raft", data)
            return self.send(200, data, "application/gzip")
        if parts[:3] == ["v1", "secret", "data"]:
            kv = json.load(open(os.path.join(args.dir, "kv.json")))
            secret = kv.get("/".join(parts[3:]))
            if secret is None:
                return self.send(404, {"errors": []})
            return self.send(200, {"data": {"data": secret, "metadata": {"version": 1}}})
        return self.send(404, {"errors": []})

    # --- n8n ---
    def n8n(self, method, parts, query):
        if self.headers.get("X-N8N-API-KEY") != args.key:
            return self.send(401, {"message": "unauthorized"})
        if parts != ["api", "v1", "workflows"] or method != "GET":
            return self.send(404, {"message": "not found"})
        limit = min(int(query.get("limit", ["100"])[0]), 3)
        start = int(base64.b64decode(query["cursor"][0])) if "cursor" in query else 0
        page = WORKFLOWS[start:start + limit]
        nxt = start + limit
        cursor = base64.b64encode(str(nxt).encode()).decode() if nxt < len(WORKFLOWS) else None
        if cursor is None:
            served("workflows.json", json.dumps(WORKFLOWS).encode())
        return self.send(200, {"data": page, "nextCursor": cursor})


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["qdrant", "vault", "n8n"])
    p.add_argument("--dir", required=True)
    p.add_argument("--key")
    p.add_argument("--fault")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
