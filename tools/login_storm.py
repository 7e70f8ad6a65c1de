#!/usr/bin/env python3
"""Login under attack, measured on a real `beffroi serve` (release build).

Starts the server on the demo deployment behind a "proxy" it trusts (`trust_forwarded`:
every request comes from the loopback with an X-Forwarded-For address chosen here), then:

1. the owner logs in as admin from 192.0.2.7 (a known address from then on);
2. 500 parallel wrong passwords for admin, each from its own address: how many passwords
   the server checked (beffroi_auth_logins_total{result="invalid_credentials"}) and what
   the clients were answered;
3. the right password from the owner's address, and from a new one;
4. 200 parallel unauthenticated logins with made-up names from 200 addresses: the server's
   resident memory before, at its peak (VmHWM) and after.

Usage: cargo build --release -p beffroi && tools/login_storm.py [BINARY]
Prints one line per measure; exits 1 if the owner is locked out or more passwords were
checked than the policy allows (10 for the account from unknown addresses).
"""

import concurrent.futures
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/release/beffroi")
PASSWORD = "Vq7-" + secrets.token_urlsafe(18)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def login(base, name, password, addr, token=False):
    body = json.dumps({"username": name, "password": password}).encode()
    req = urllib.request.Request(
        base + "/api/v1/auth/login",
        data=body,
        headers={"Content-Type": "application/json", "X-Forwarded-For": addr},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
            return (r.status, answer["token"] if token else "ok")
    except urllib.error.HTTPError as e:
        return (e.code, json.loads(e.read() or b"{}").get("error", {}).get("code", ""))


def metric(base, token, name, label):
    req = urllib.request.Request(base + "/metrics", headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + "{") and label in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) // 1024
    return out


def main():
    work = tempfile.mkdtemp(prefix="beffroi-login-")
    port = free_port()
    cfg = os.path.join(work, "beffroi.toml")
    with open(cfg, "w") as f:
        f.write(
            f'listen = "127.0.0.1:{port}"\ndata_dir = "{work}/data"\n'
            f'deployment = "{ROOT}/demo"\n[http]\ntrust_forwarded = true\n'
        )
    env = dict(os.environ, BEFFROI_ADMIN_PASSWORD=PASSWORD, BEFFROI_LOG="warn")
    server = subprocess.Popen(
        [BIN, "serve", "--config", cfg], env=env,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        time.sleep(1)
        status, token = login(base, "admin", PASSWORD, "192.0.2.7", token=True)
        assert status == 200, (status, token)
        print(f"owner login from 192.0.2.7: {status}")
        before = rss(server.pid)

        with concurrent.futures.ThreadPoolExecutor(max_workers=500) as pool:
            answers = list(pool.map(
                lambda i: login(base, "admin", f"guess-{i}", f"198.51.{i // 250}.{i % 250 + 1}"),
                range(500),
            ))
        counts = {}
        for status, code in answers:
            counts[f"{status} {code}"] = counts.get(f"{status} {code}", 0) + 1
        checked = metric(base, token, "beffroi_auth_logins_total", 'result="invalid_credentials"')
        print(f"500 parallel wrong passwords for admin from 500 addresses: answers {counts}; "
              f"passwords checked {int(checked)}")
        owner = login(base, "admin", PASSWORD, "192.0.2.7")
        stranger = login(base, "admin", PASSWORD, "203.0.113.9")
        print(f"right password from the owner's address: {owner}; from a new address: {stranger}")

        with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
            storm = list(pool.map(
                lambda i: login(base, f"nobody-{i}", "whatever-password", f"10.9.{i // 250}.{i % 250 + 1}"),
                range(200),
            ))
        time.sleep(2)
        after = rss(server.pid)
        codes = {}
        for status, code in storm:
            codes[f"{status} {code}"] = codes.get(f"{status} {code}", 0) + 1
        print(f"200 parallel unauthenticated logins: answers {codes}; RSS before {before['VmRSS']} MB, "
              f"peak {after['VmHWM']} MB, after {after['VmRSS']} MB")
        ok = owner[0] == 200 and checked <= 10 and after["VmHWM"] < 200
        return 0 if ok else 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
