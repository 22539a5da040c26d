"""hutch web's first slice (issue #14): the Starlette app with Starlette's TestClient on
memory:// and SQLite (health, readiness, security headers, the URL prefix), the bind
rule, and the ``hutch web`` command's refusals. The process under systemd, over real
HTTP with RabbitMQ and PostgreSQL: tests/integration/test_systemd_rabbitmq.py."""

from __future__ import annotations

import asyncio
import configparser
import re
import socket
import subprocess
import sys
import threading
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import hutch.web
from hutch import Hutch
from hutch.cli.main import main
from hutch.config import Settings
from hutch.errors import ConfigurationError
from hutch.web.app import create_app
from hutch.web.headers import HEADERS
from hutch.web.health import Readiness
from hutch.web.security import check_bind
from hutch.web.server import ping_watchdog
from support.notify import NotifySocket
from support.waiting import eventually

AUTH_LINE = "without authentication: add a user to web_users"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, never listened, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def client(memory_app):
    with TestClient(create_app(memory_app)) as http:
        yield http


def test_healthz_says_the_process_is_up(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"


def test_readyz_is_ready_when_the_database_and_the_broker_answer(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_names_the_database_that_does_not_answer_and_nothing_secret(caplog):
    url = f"postgresql://hutch:s3cret-pw@127.0.0.1:{_closed_port()}/hutchdb"
    app = Hutch("t", broker="memory://", backend=url)
    try:
        with TestClient(create_app(app)) as http:
            answer = http.get("/readyz")
    finally:
        app.close()
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable",
                             "checks": {"database": "unavailable", "broker": "ok"}}
    for secret in ("s3cret", "127.0.0.1", "hutchdb", "postgresql", "Traceback"):
        assert secret not in answer.text
    logged = [r.getMessage() for r in caplog.records if r.name == "hutch.web"]
    assert any("not answering" in line and "database" in line for line in logged), logged
    assert not any("s3cret" in line for line in logged), "the log masks the password"


def test_a_part_that_hangs_is_unavailable_after_the_timeout_not_a_hung_request():
    """And the stuck probe's thread holds nothing up: the app stops (the TestClient's
    loop closes) while it still hangs."""
    release = threading.Event()
    readiness = Readiness({"database": lambda: None, "broker": lambda: release.wait(30)},
                          timeout=0.2)
    app = Hutch("t", broker="memory://", backend="sqlite://")
    try:
        with TestClient(create_app(app, readiness=readiness)) as http:
            answers = [http.get("/readyz") for _ in range(2)]
            hung = [t for t in threading.enumerate() if t.name == "hutch-web-broker"]
    finally:
        release.set()
        app.close()
    assert [a.status_code for a in answers] == [503, 503]
    assert answers[1].json()["checks"] == {"database": "ok", "broker": "unavailable"}
    assert len(hung) == 1, "the second check waits for the stuck probe, no second thread"


def test_a_failing_probe_answers_503_whatever_it_raises():
    def broken() -> None:
        raise RuntimeError("amqp://guest:guest@rabbit.internal:5672// refused")

    app = Hutch("t", broker="memory://", backend="sqlite://")
    try:
        with TestClient(create_app(app, readiness=Readiness(
                {"database": lambda: None, "broker": broken}, timeout=5))) as http:
            answer = http.get("/readyz")
    finally:
        app.close()
    assert answer.status_code == 503 and "rabbit.internal" not in answer.text


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/static/hutch.css",
                                  "/no-such-page"])
def test_every_answer_carries_the_security_headers(client, path):
    answer = client.get(path)
    for name, value in HEADERS.items():
        assert answer.headers[name] == value, (path, name)
    csp = answer.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_landing_page_is_server_rendered_and_links_the_health_endpoints(client):
    answer = client.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "hutch web" in answer.text
    assert 'href="/healthz"' in answer.text and 'href="/static/hutch.css"' in answer.text
    scripts = re.findall(r"<script[^>]*>", answer.text)
    assert all(' src="/static/' in tag for tag in scripts), "CSP: no inline script"
    assert "style=" not in answer.text, "CSP: no inline style"


def test_a_url_prefix_puts_everything_under_it(memory_app):
    memory_app.conf.web_url_prefix = "/hutch/"
    with TestClient(create_app(memory_app)) as http:
        assert http.get("/hutch/healthz").json() == {"status": "ok"}
        assert http.get("/hutch/readyz").status_code == 200
        page = http.get("/hutch/")
        assert 'href="/hutch/healthz"' in page.text
        assert 'href="/hutch/static/hutch.css"' in page.text
        assert http.get("/hutch/static/hutch.css").status_code == 200
        assert http.get("/healthz").status_code == 404


def test_the_web_settings_have_defaults_and_are_checked():
    conf = Settings()
    assert (conf.web_host, conf.web_port, conf.web_url_prefix) == ("127.0.0.1", 5555, "")
    conf.web_url_prefix = "/"
    assert conf.web_url_prefix == ""
    for bad in ("hutch", "/a b", "/a//b", "/x?y"):
        with pytest.raises(ConfigurationError, match="web_url_prefix"):
            conf.web_url_prefix = bad
    with pytest.raises(ConfigurationError, match="web_port"):
        conf.web_port = 65536
    conf.apply_environment({"HUTCH_WEB_PORT": "8080", "HUTCH_WEB_HOST": "::1"})
    assert (conf.web_port, conf.web_host) == (8080, "::1")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost"])
def test_loopback_addresses_may_be_served_without_auth(host):
    check_bind(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "10.1.2.3", "2001:db8::1"])
def test_any_other_address_is_refused_without_auth(host):
    with pytest.raises(ConfigurationError, match=AUTH_LINE):
        check_bind(host)


def _hutch(capsys, *args: str) -> tuple[int, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_hutch_web_on_a_public_address_exits_2_with_the_auth_line(capsys):
    code, err = _hutch(capsys, "-b", "memory://", "web", "--host", "0.0.0.0")
    assert code == 2
    assert err.startswith("error: web_host: refusing to listen on '0.0.0.0'") and \
        AUTH_LINE in err and err.count("\n") == 1, err


def test_hutch_web_on_a_port_in_use_exits_2_with_one_line(capsys, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _hutch(capsys, "-b", "memory://", "--backend",
                           f"sqlite:///{tmp_path / 'r.sqlite'}", "web", "--port", str(port))
    assert code == 2
    assert err == f"error: web: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def test_hutch_web_refuses_a_bad_url_prefix(capsys):
    code, err = _hutch(capsys, "-b", "memory://", "web", "--url-prefix", "hutch")
    assert code == 2 and "web_url_prefix: expected a path such as /hutch" in err


def test_hutch_web_without_the_web_extra_says_what_to_install():
    """Starlette missing (as without ``pip install 'hutch[web]'``): every other command
    works, ``hutch web`` says what to install, in one line."""
    program = ("import sys; sys.modules['starlette'] = None; from hutch.cli.main import main; "
               "main(sys.argv[1:])")
    web = subprocess.run([sys.executable, "-c", program, "-b", "memory://", "web"],
                         capture_output=True, text=True, timeout=60)
    assert web.returncode == 2
    assert web.stderr == ("error: hutch web needs the web extra: pip install 'hutch[web]' "
                          "(starlette is not installed)\n")
    other = subprocess.run([sys.executable, "-c", program, "config", "check"],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr


def test_the_templates_and_static_files_are_package_data_of_the_wheel():
    """setup.cfg's package_data for hutch.web names every file under templates/ and
    static/ (a file it misses works in a checkout and is absent once installed)."""
    root = Path(__file__).resolve().parents[2]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(root / "setup.cfg")
    globs = [g.strip() for g in parser["options.package_data"]["hutch.web"].split(",")]
    web = Path(hutch.web.__file__).parent
    shipped = [p.relative_to(web).as_posix() for d in ("templates", "static")
               for p in (web / d).rglob("*") if p.is_file()]
    assert shipped and all(any(fnmatch(f, g) for g in globs) for f in shipped), (shipped, globs)


def test_watchdog_pings_come_from_the_serving_loop_so_a_blocked_loop_stops_them(monkeypatch):
    """server.ping_watchdog runs as a task of the loop uvicorn serves on: while a handler
    blocks the loop, no ping goes out (systemd restarts the process after WatchdogSec)."""
    sock = NotifySocket()
    monkeypatch.setenv("NOTIFY_SOCKET", sock.address)

    async def serve_then_block() -> float:
        pinger = asyncio.create_task(ping_watchdog(0.05))
        await asyncio.sleep(0.3)
        blocked_at = time.monotonic()
        time.sleep(0.6)  # a handler that blocks the loop
        await asyncio.sleep(0.2)
        pinger.cancel()
        return blocked_at

    try:
        blocked_at = asyncio.run(serve_then_block())
        assert eventually(lambda: len(sock.with_field("WATCHDOG=1")) >= 4, 5)
    finally:
        sock.close()
    pings = [m.at for m in sock.with_field("WATCHDOG=1")]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert max(gaps) >= 0.5, "no ping while the loop was blocked"
    assert any(at > blocked_at + 0.6 for at in pings), "pings resume with the loop"


def test_the_navigation_shows_only_the_pages_that_exist(client):
    from starlette.routing import NoMatchFound

    from hutch.web.pages import NAV
    page = client.get("/").text
    nav = page[page.index("<nav>"):page.index("</nav>")]
    assert nav.startswith('<nav><a href="/">Overview</a><a href="/tasks">Tasks</a>')
    for label, name in NAV:  # an entry shows exactly when its page exists
        try:
            path = client.app.url_path_for(name)
        except NoMatchFound:
            path = None
        assert (f">{label}</a>" in nav) == (path is not None and
                                            client.get(path).status_code == 200), label


def test_a_read_only_user_is_shown_as_such(sqlite_url, tmp_path):
    from hutch.web.passwords import hash_password
    app = Hutch("web-nav", broker="memory://", backend=sqlite_url,
                web_users={"ro": {"password_hash": hash_password("pw"), "role": "read"}})
    try:
        with TestClient(create_app(app)) as http:
            page = http.get("/", auth=("ro", "pw")).text
            assert '<span class="who">ro (read only)</span>' in page
    finally:
        app.close()


def test_each_request_is_one_access_log_line_with_who_asked(sqlite_url, caplog):
    from hutch.web.passwords import hash_password
    app = Hutch("web-access", broker="memory://", backend=sqlite_url,
                web_users={"ada": {"password_hash": hash_password("pw"), "role": "read"}})
    caplog.set_level("DEBUG", logger="hutch.web.access")
    try:
        with TestClient(create_app(app)) as http:
            http.get("/tasks?search=secret-text", auth=("ada", "pw"))
            http.get("/api/v1/tasks")
            http.get("/healthz")
        lines = [(r.levelname, r.msg) for r in caplog.records if r.name == "hutch.web.access"]
        assert [(level, m["method"], m["path"], m["status"], m["user"])
                for level, m in lines] == [
            ("INFO", "GET", "/tasks", 200, "ada"), ("INFO", "GET", "/api/v1/tasks", 401, None),
            ("DEBUG", "GET", "/healthz", 200, None)]
        assert all(m["ms"] >= 0 and m["client"] == "testclient" for _, m in lines)
        assert not any("secret-text" in str(m) for _, m in lines)
    finally:
        app.close()


def test_the_access_log_can_be_turned_off(memory_app, caplog):
    memory_app.conf.web_access_log = False
    caplog.set_level("DEBUG", logger="hutch.web.access")
    with TestClient(create_app(memory_app)) as http:
        http.get("/")
    assert not [r for r in caplog.records if r.name == "hutch.web.access"]
