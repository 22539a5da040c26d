"""hutch web's security (issue #14): HTTP basic users with argon2 hashes, bearer tokens
made by ``hutch web token`` (on SQLite), the read and admin roles, CSRF, cookies and the
bind rule, through Starlette's TestClient on memory:// and SQLite. The tokens table on
PostgreSQL: tests/integration/test_web_auth_postgres.py."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
from urllib.parse import parse_qs

import pytest
from argon2 import PasswordHasher
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hutch.cli.main import main
from hutch.errors import ConfigurationError
from hutch.web.app import create_app
from hutch.web.auth import ADMIN, needs, principal_of
from hutch.web.passwords import hash_password
from hutch.web.security import auth_configured, check_bind

PASSWORDS = {"reader": "read-pw-1", "boss": "admin-pw-2"}


@pytest.fixture(scope="module")
def users() -> dict[str, dict[str, str]]:
    return {"reader": {"password_hash": hash_password(PASSWORDS["reader"]), "role": "read"},
            "boss": {"password_hash": hash_password(PASSWORDS["boss"]), "role": "admin"}}


def basic(user: str, password: str | None = None) -> dict[str, str]:
    secret = f"{user}:{PASSWORDS[user] if password is None else password}"
    return {"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()}


async def _admin_page(request: Request) -> Response:
    principal = principal_of(request)
    return JSONResponse({"user": principal.name if principal else None})


async def _form(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())  # no python-multipart in the extra
    return JSONResponse({"got": form["what"][0]})


TEST_ROUTES = [Route("/admin-only", needs(ADMIN)(_admin_page)),
               Route("/form", _form, methods=["POST"])]


@pytest.fixture
def secured(memory_app, users):
    memory_app.conf.web_users = users
    with TestClient(create_app(memory_app, routes=TEST_ROUTES)) as http:
        yield http


def csrf_of(http: TestClient, headers: dict[str, str]) -> str:
    token = http.get("/api/v1/auth/me", headers=headers).json()["csrf_token"]
    assert isinstance(token, str) and len(token) >= 32
    return token


def test_loopback_without_auth_configured_is_open(memory_app):
    assert not auth_configured(memory_app.conf)
    with TestClient(create_app(memory_app)) as http:
        assert http.get("/").status_code == 200
        me = http.get("/api/v1/auth/me").json()
    assert (me["user"], me["role"], me["via"]) == ("anonymous", "admin", "open")


def test_without_credentials_pages_ask_for_basic_and_the_api_answers_json(secured):
    page = secured.get("/")
    assert page.status_code == 401
    assert page.headers["www-authenticate"].startswith("Basic realm=")
    api = secured.get("/api/v1/auth/me")
    assert api.status_code == 401 and api.json() == {"error": "authentication required", "field": None}
    assert api.headers["x-frame-options"] == "DENY", "refusals keep the security headers"
    for probe in ("/healthz", "/readyz"):
        assert secured.get(probe).status_code == 200, probe


NOBODY = {"Authorization": "Basic " + base64.b64encode(b"nobody:read-pw-1").decode()}


@pytest.mark.parametrize("headers", [basic("reader", "wrong-pw"), NOBODY,
                                     {"Authorization": "Basic not-base64!"},
                                     {"Authorization": "Bearer abc"}])
def test_wrong_credentials_are_refused(secured, headers, caplog):
    caplog.set_level(logging.WARNING, logger="hutch.web")
    assert secured.get("/", headers=headers).status_code == 401
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "-pw" not in logged and "nobody" not in logged, "no password, no unknown name"


def test_a_read_user_reads_but_may_not_act(secured):
    assert secured.get("/", headers=basic("reader")).status_code == 200
    me = secured.get("/api/v1/auth/me", headers=basic("reader")).json()
    assert (me["user"], me["role"], me["via"]) == ("reader", "read", "basic")
    token = csrf_of(secured, basic("reader"))
    act = secured.post("/api/v1/auth/check", headers={**basic("reader"), "X-CSRF-Token": token})
    assert act.status_code == 403
    assert act.json() == {"error": "this needs the admin role; reader has read", "field": None}
    assert secured.get("/admin-only", headers=basic("reader")).status_code == 403


def test_metrics_need_the_read_role_once_auth_is_on(secured):
    assert secured.get("/metrics").status_code == 401
    scraped = secured.get("/metrics", headers=basic("reader"))
    assert scraped.status_code == 200 and "hutch_scrape_error" in scraped.text


def test_an_admin_acts_and_a_route_may_ask_for_admin_on_get(secured):
    assert secured.get("/admin-only", headers=basic("boss")).json() == {"user": "boss"}
    token = csrf_of(secured, basic("boss"))
    act = secured.post("/api/v1/auth/check", headers={**basic("boss"), "X-CSRF-Token": token})
    assert act.status_code == 200 and act.json() == {"ok": True, "user": "boss", "role": "admin"}


def test_a_state_changing_request_without_the_csrf_token_is_refused(secured):
    refused = secured.post("/api/v1/auth/check", headers=basic("boss"))
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    token = csrf_of(secured, basic("boss"))
    wrong = secured.post("/api/v1/auth/check", headers={**basic("boss"), "X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    elsewhere = secured.post("/api/v1/auth/check", headers={
        **basic("boss"), "X-CSRF-Token": token, "Origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "another site" in elsewhere.json()["error"]
    here = secured.post("/api/v1/auth/check", headers={
        **basic("boss"), "X-CSRF-Token": token, "Origin": "http://testserver"})
    assert here.status_code == 200


def test_a_form_carries_the_csrf_token_in_a_field_and_its_body_still_reaches_the_route(secured):
    token = csrf_of(secured, basic("boss"))
    posted = secured.post("/form", headers=basic("boss"), data={"csrf_token": token, "what": "it"})
    assert posted.status_code == 200 and posted.json() == {"got": "it"}
    missing = secured.post("/form", headers=basic("boss"), data={"what": "it"})
    assert missing.status_code == 403 and "CSRF check failed" in missing.text


def test_csrf_applies_on_an_open_loopback_dashboard_too(memory_app):
    with TestClient(create_app(memory_app)) as http:
        assert http.post("/api/v1/auth/check").status_code == 403
        token = csrf_of(http, {})
        assert http.post("/api/v1/auth/check", headers={"X-CSRF-Token": token}).status_code == 200


def test_the_csrf_cookie_is_httponly_lax_and_secure_over_tls(memory_app):
    with TestClient(create_app(memory_app)) as http:
        cookie = http.get("/").headers["set-cookie"]
    assert cookie.startswith("hutch_csrf=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie
    with TestClient(create_app(memory_app), base_url="https://testserver") as http:
        cookie = http.get("/").headers["set-cookie"]
    assert cookie.startswith("__Host-hutch_csrf=") and "; Secure" in cookie
    forwarded = {"X-Forwarded-Proto": "https"}
    with TestClient(create_app(memory_app)) as http:
        assert "Secure" not in http.get("/", headers=forwarded).headers["set-cookie"]
    memory_app.conf.web_trust_proxy = True
    with TestClient(create_app(memory_app)) as http:
        assert "; Secure" in http.get("/", headers=forwarded).headers["set-cookie"]


def _hutch(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_tokens_made_listed_and_revoked_with_the_cli(memory_app, capsys):
    db = ("-b", "memory://", "--backend", memory_app.conf.result_backend)
    code, out, err = _hutch(capsys, *db, "web", "token", "create", "ci", "--role", "admin")
    assert code == 0, err
    token = out.strip()
    assert len(token) >= 43 and "shown this once" in err and "web_tokens is off" in err
    code, out, err = _hutch(capsys, *db, "web", "token", "create", "ci")
    assert code == 2 and "exists already" in err
    _hutch(capsys, *db, "web", "token", "create", "viewer")
    code, listed, _ = _hutch(capsys, *db, "web", "token", "list")
    assert code == 0 and [line.split("\t")[:2] for line in listed.splitlines()] == [
        ["ci", "admin"], ["viewer", "read"]]
    assert token not in listed

    memory_app.conf.web_tokens = True
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(memory_app)) as http:
        unauthenticated = http.get("/api/v1/auth/me")
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"].startswith("Bearer")
        me = http.get("/api/v1/auth/me", headers=bearer).json()
        assert (me["user"], me["role"], me["via"]) == ("token:ci", "admin", "token")
        acted = http.post("/api/v1/auth/check", headers=bearer)  # no CSRF token: exempt
        assert acted.status_code == 200, acted.text
        assert "set-cookie" not in acted.headers, "a script with a token gets no cookie"
        code, _, err = _hutch(capsys, *db, "web", "token", "revoke", "ci")
        assert code == 0 and "revoked" in err
        assert http.get("/api/v1/auth/me", headers=bearer).status_code == 401
    code, _, err = _hutch(capsys, *db, "web", "token", "revoke", "ci")
    assert code == 2 and "no token named 'ci'" in err


def test_the_bind_rule_allows_a_public_address_once_auth_is_configured(memory_app, users):
    conf = memory_app.conf
    with pytest.raises(ConfigurationError, match="without authentication: add a user"):
        check_bind("0.0.0.0", auth_configured(conf))
    conf.web_users = users
    check_bind("0.0.0.0", auth_configured(conf))
    conf.web_users = {}
    conf.web_tokens = True
    check_bind("192.0.2.10", auth_configured(conf))


def test_hash_password_reads_stdin_and_prints_an_argon2_hash(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    code, out, err = _hutch(capsys, "web", "hash-password")
    assert code == 0, err
    digest = out.strip()
    assert digest.startswith("$argon2id$") and "s3cret" not in out + err
    assert PasswordHasher().verify(digest, "s3cret pass")


def test_web_users_refuse_a_password_in_place_of_a_hash_without_repeating_it(memory_app, users):
    with pytest.raises(ConfigurationError) as caught:
        memory_app.conf.web_users = {"ann": {"password_hash": "hunter2", "role": "admin"}}
    assert "not an argon2 hash" in str(caught.value) and "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="is not one of read, admin"):
        memory_app.conf.web_users = {"ann": {"password_hash": "$argon2id$x", "role": "root"}}
    memory_app.conf.apply_environment({"HUTCH_WEB_USERS": json.dumps(users)})
    assert memory_app.conf.web_users == users
    assert memory_app.conf.masked()["web_users"] == "***"
    half = json.dumps(users)[:-1]
    with pytest.raises(ConfigurationError) as caught:
        memory_app.conf.apply_environment({"HUTCH_WEB_USERS": half})
    assert "expected a JSON object, got ***" in str(caught.value)
    assert "argon2" not in str(caught.value)
    assert users["boss"]["password_hash"] not in repr(memory_app.conf)


def test_hutch_web_on_a_public_address_passes_the_bind_rule_with_users(capsys, monkeypatch,
                                                                      users, tmp_path):
    """The rule as ``hutch web`` applies it: with HUTCH_WEB_USERS it gets past the bind
    rule to the socket (here a port in use: exit 2 naming the address, nothing served)."""
    monkeypatch.setenv("HUTCH_WEB_USERS", json.dumps(users))
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _hutch(capsys, "-b", "memory://", "--backend",
                              f"sqlite:///{tmp_path / 'r.sqlite'}", "web", "--host", "0.0.0.0",
                              "--port", str(port))
    assert code == 2 and err == f"error: web: cannot listen on 0.0.0.0:{port}: Address already in use\n"
