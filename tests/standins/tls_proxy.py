#!/usr/bin/env python3
"""A TLS-terminating TCP proxy for the tests: accepts TLS (1.2 or later) on 127.0.0.1 with the
given certificate and key, and forwards the plain bytes to UPSTREAM (host:port). Prints its port
on the first line of stdout, then serves until killed. It stands where a reverse proxy (nginx,
Traefik, a load balancer) terminates TLS in front of MinIO, Vault or Qdrant."""

import argparse
import socket
import ssl
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(1 << 16)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(conn, ctx, upstream):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        # A client that refused the certificate: what the tests expect without `ca_file`.
        conn.close()
        return
    host, port = upstream.rsplit(":", 1)
    try:
        plain = socket.create_connection((host, int(port)))
    except OSError:
        tls.close()
        return
    threading.Thread(target=pipe, args=(tls, plain), daemon=True).start()
    pipe(plain, tls)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--upstream", required=True)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, ctx, args.upstream), daemon=True).start()


if __name__ == "__main__":
    main()
