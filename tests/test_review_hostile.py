"""Hostile input to the review app and its store (issue 13, items 12-15): real sockets on 127.0.0.1, real SQLite files.

The app is served from hand-made labels (no model: evidence off), so these tests need no training run.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from urllib.parse import urlencode

import pandas as pd
import pytest

from rtic.errors import RticError
from rtic.review.store import ReviewStore

N_FIRMS = 620  # more than the largest page (500), so an unbounded search would show


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    rows = [{"firm_id": f"F{i:04d}", "sector_id": s, "probability": p, "assigned": p >= 0.5, "model_name": "m", "model_version": "1",
             "taxonomy_version": "t1", "text_sha256": "0" * 64, "classified_at": "2026-01-01T00:00:00+00:00"}
            for i in range(N_FIRMS) for s, p in (("clean_growth", 0.9 if i % 2 else 0.1), ("fintech", 0.3))]
    path = tmp_path_factory.mktemp("hostile_labels") / "labels.parquet"
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def serve(labels, reviews, idle_timeout=1.0):
    from rtic.review.app import build_app, make_server

    app = build_app(None, labels, reviews, reviewer="alice", port=0, use_model=False)
    httpd = make_server(app)
    httpd.RequestHandlerClass.timeout = idle_timeout  # short, so the tests need not wait the real 15 s
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, app


@pytest.fixture(scope="module")
def server(labels, tmp_path_factory):
    httpd, app = serve(labels, tmp_path_factory.mktemp("hostile_reviews") / "reviews.sqlite")
    yield httpd.server_address[1], app
    httpd.shutdown()
    httpd.server_close()


def raw(port: int, data: bytes, read_timeout: float = 5.0, then_hold: bool = False) -> bytes:
    """Send raw bytes on a fresh socket; what the server answers until it closes (or read_timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking the whole body (a refused length): read its answer
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


def post(port, body: bytes, headers: dict, path="/firm/F0001/decide") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + body


def form(app, firm="F0001", decision="reject", sector="clean_growth") -> bytes:
    return urlencode({"csrf": app.csrf_token, "action": f"{decision}:{sector}", "note": "n"}).encode()


def get(port, target, headers=None) -> tuple[int, bytes]:
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    response = raw(port, (head + "\r\n").encode())
    return status_of(response), response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""


# -- 12: Content-Length, body cap, idle connections -------------------------------------------------
def test_negative_missing_and_bad_content_length_are_refused_and_nothing_recorded(server):
    port, app = server
    before = len(app.store.history("F0001"))
    body = form(app)
    big = body + b"&x=" + b"a" * 3_000_000  # would be read to the end of the stream with Content-Length: -1
    started = time.monotonic()
    assert status_of(raw(port, post(port, big, {"Content-Length": "-1"}))) == 400
    assert status_of(raw(port, post(port, body, {}))) == 411  # no length at all
    assert status_of(raw(port, post(port, body, {"Transfer-Encoding": "chunked"}))) == 411
    for bad in ("+50", "1e3", "0x10", "abc", "50, 50"):
        assert status_of(raw(port, post(port, body, {"Content-Length": bad}))) == 400, bad
    # Refused from the declared length alone: the server never reads the body (sent short, so no race on the socket).
    assert status_of(raw(port, post(port, body, {"Content-Length": str(len(big))}))) == 413
    assert time.monotonic() - started < 20
    assert len(app.store.history("F0001")) == before
    ok = raw(port, post(port, body, {"Content-Length": str(len(body)), "Content-Type": "application/x-www-form-urlencoded", "Connection": "close"}))
    assert status_of(ok) == 303 and len(app.store.history("F0001")) == before + 1


def test_a_body_shorter_than_declared_is_dropped_after_the_idle_timeout(server):
    port, app = server
    before = len(app.store.history("F0001"))
    body = form(app)
    started = time.monotonic()
    # Declares 1,000 bytes, sends fewer and holds the socket open: the server closes it at the idle timeout.
    response = raw(port, post(port, body, {"Content-Length": "1000"}), read_timeout=10)
    assert response == b"" and time.monotonic() - started < 5
    assert len(app.store.history("F0001")) == before


def test_idle_connections_are_closed_and_their_threads_freed(server):
    port, _ = server
    baseline = threading.active_count()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(30)]
    socks[0].sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port)  # half a request, never finished
    time.sleep(0.3)
    assert threading.active_count() >= baseline + 20  # one thread per connection while they are open
    deadline = time.monotonic() + 6
    closed = 0
    for s in socks:
        s.settimeout(max(deadline - time.monotonic(), 0.1))
        try:
            closed += s.recv(10) == b""
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
    assert closed == len(socks)
    time.sleep(0.3)
    assert threading.active_count() <= baseline + 2


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(labels, tmp_path, monkeypatch):
    from rtic.review import app as review_app

    monkeypatch.setattr(review_app.BoundedThreadingHTTPServer, "max_connections", 4)
    httpd, _ = serve(labels, tmp_path / "reviews.sqlite", idle_timeout=30)
    port = httpd.server_address[1]
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        time.sleep(0.2)
        assert status_of(raw(port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)) == 503
        for s in held:
            s.close()
        time.sleep(0.3)  # the held connections' threads see the close and end
        assert get(port, "/")[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- 13: /api/search limit ------------------------------------------------------------------------
def test_search_limit_is_validated_and_capped(server):
    port, app = server
    for bad in ("-1", "0", "501", "abc", "1.5", " -1", "99999999999999999999"):
        status, body = get(port, "/api/search?" + urlencode({"limit": bad}))
        assert status == 400 and b"limit must be a whole number from 1 to 500" in body, (bad, status)
    status, body = get(port, "/api/search?limit=500")
    assert status == 200 and len(json.loads(body)["firms"]) == 500
    status, body = get(port, "/api/search")
    assert status == 200 and len(json.loads(body)["firms"]) == 50
    with pytest.raises(RticError, match="at least 1"):
        app.index.search(limit=-1)


# -- 15: Origin includes the scheme -----------------------------------------------------------------
def test_origin_must_match_scheme_host_and_port(server):
    port, app = server
    body = form(app, decision="reject")
    before = len(app.store.history("F0001"))
    for origin in (f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", "null", f"http://evil.example:{port}",
                   f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}.evil.example"):
        response = raw(port, post(port, body, {"Content-Length": str(len(body)), "Origin": origin}))
        assert status_of(response) == 403, origin
    assert len(app.store.history("F0001")) == before
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        response = raw(port, post(port, body, {"Content-Length": str(len(body)), "Origin": origin, "Connection": "close"}))
        assert status_of(response) == 303, origin
    assert len(app.store.history("F0001")) == before + 2


# -- 14: append-only against every SQL path ----------------------------------------------------------
COLS = "(id, firm_id, sector_id, decision, reviewer, note, model_version, decided_at)"
REWRITES = {
    "update": "UPDATE decisions SET decision = 'add' WHERE id = 1",
    "update_or_replace": "UPDATE OR REPLACE decisions SET decision = 'add', id = 2 WHERE id = 1",
    "delete": "DELETE FROM decisions WHERE id = 1",
    "replace_into": f"REPLACE INTO decisions {COLS} VALUES (1, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "insert_or_replace": f"INSERT OR REPLACE INTO decisions {COLS} VALUES (1, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "upsert": f"INSERT INTO decisions {COLS} VALUES (1, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x') "
              "ON CONFLICT (id) DO UPDATE SET decision = excluded.decision",
    "upsert_nothing_then_reuse": f"INSERT OR IGNORE INTO decisions {COLS} VALUES (1, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "insert_existing_id": f"INSERT INTO decisions {COLS} VALUES (2, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "backdated_id": f"INSERT INTO decisions {COLS} VALUES (0, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "negative_id": f"INSERT INTO decisions {COLS} VALUES (-1, 'F1', 'clean_growth', 'add', 'mallory', '', '', 'x')",
    "replace_select": f"REPLACE INTO decisions {COLS} SELECT id, firm_id, sector_id, 'add', 'mallory', note, model_version, decided_at FROM decisions",
}


@pytest.mark.parametrize("path", list(REWRITES))
def test_history_is_immutable_through_every_sql_path(tmp_path, path):
    store = ReviewStore(tmp_path / "r.sqlite")
    store.record("F1", "clean_growth", "confirm", "alice")
    store.record("F1", "clean_growth", "reject", "bob")
    before = store.frame().to_dict("records")
    store.close()
    conn = sqlite3.connect(tmp_path / "r.sqlite")  # a plain connection, as any SQLite client would open it
    with pytest.raises(sqlite3.IntegrityError, match="append-only|positive"):
        with conn:
            conn.execute(REWRITES[path])
    conn.close()
    assert ReviewStore(tmp_path / "r.sqlite").frame().to_dict("records") == before


def test_appending_still_works_and_dropped_or_replaced_triggers_are_restored(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ReviewStore(path)
    store.record("F1", "clean_growth", "confirm", "alice")
    version = store.conn.execute("PRAGMA schema_version").fetchone()[0]
    store.close()
    store = ReviewStore(path)  # reopening leaves a good schema alone
    assert store.conn.execute("PRAGMA schema_version").fetchone()[0] == version
    store.conn.execute(f"INSERT INTO decisions {COLS} VALUES (10, 'F1', 'clean_growth', 'reject', 'bob', '', '', 'x')")  # an id after the last
    store.conn.commit()
    assert store.record("F1", "clean_growth", "confirm", "carol").id == 11
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER decisions_no_replace")
    conn.execute("DROP TRIGGER decisions_no_update")
    conn.execute("CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions BEGIN SELECT 1; END")  # a no-op under the same name
    conn.commit()
    conn.close()
    store = ReviewStore(path)
    for sql in (REWRITES["update"], REWRITES["replace_into"]):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            with store.conn:
                store.conn.execute(sql.replace("id = 1", "id = 10").replace("VALUES (1,", "VALUES (10,"))
    assert [d.decision for d in store.history("F1")] == ["confirm", "reject", "confirm"]


# -- found by our own hostile pass ------------------------------------------------------------------
def test_a_form_with_too_many_fields_is_refused_not_a_traceback(server, capfd):
    port, app = server
    before = len(app.store.history("F0001"))
    body = (urlencode({f"f{i}": "1" for i in range(60)}) + "&" + form(app).decode()).encode()
    response = raw(port, post(port, body, {"Content-Length": str(len(body)), "Connection": "close"}))
    assert status_of(response) == 400 and b"form fields" in response
    assert len(app.store.history("F0001")) == before
    assert "Traceback" not in capfd.readouterr().err


def test_hostile_search_text_and_ids_are_answered(server):
    port, _ = server
    for target in ("/?q=%22", "/?q=NEAR(", "/?q=*", "/?q=a%20OR%20", "/?q=%00", "/api/search?q=%22%22%22", "/?q=%5E", "/?q=a:b",
                   "/?after=%00&q=f", "/?sector=" + "x" * 5000, "/api/search?review=near&sector=%27", "/firm/F0001?sector=%00"):
        assert get(port, target)[0] == 200, target
    for target in ("/firm/%ff", "/firm/%00", "/api/firm/%ff%fe"):
        assert get(port, target)[0] == 404, target
    assert get(port, "/?review=bogus")[0] == 400
