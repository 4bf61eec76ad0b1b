"""Control panel pages: behind sign-in, first-run setup, settings, activity, directory."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from admin import accounts as accounts_module
from admin import on_serve, views_directory
from app import create_app
from server.config import ServerSettings, Settings
from tests.admin_support import (
    PASSWORD,
    USERNAME,
    AdminClient,
    create_admin,
    csrf_of,
    forget_activity,
    signed_in,
)
from tests.conftest import ScimClient

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"

PROTECTED_PAGES = [
    "/admin",
    "/admin/settings",
    "/admin/settings/tokens/revoke?name=entra",
    "/admin/activity",
    "/admin/directory/users",
    "/admin/directory/users/some-id",
    "/admin/directory/groups",
    "/admin/directory/groups/some-id",
]


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def panel(app: Flask) -> AdminClient:
    return signed_in(app)


# -- sign-in -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PROTECTED_PAGES)
def test_pages_without_a_session_redirect_to_sign_in(app: Flask, path: str) -> None:
    create_admin(app)
    response = app.test_client().get(path)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/admin/sign-in"
    assert parse_qs(location.query)["next"] == [path]


def test_a_post_without_a_session_changes_nothing_and_redirects(app: Flask) -> None:
    client = app.test_client()
    token = csrf_of(client.get("/admin/sign-in"))
    response = client.post(
        "/admin/settings/provisioning", data={"csrf_token": token, "enabled": "1"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/sign-in"
    assert not app.extensions["proware"].switch.enabled()


def test_sign_in_takes_the_admin_back_to_the_page_asked_for(app: Flask) -> None:
    create_admin(app)
    client = app.test_client()
    page = client.get("/admin/sign-in?next=/admin/activity")
    response = client.post(
        "/admin/sign-in",
        data={
            "csrf_token": csrf_of(page),
            "username": USERNAME,
            "password": PASSWORD,
            "next": "/admin/activity",
        },
    )
    assert response.headers["Location"] == "/admin/activity"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/admin",
        "/admin\\..\\x",
        "/scim/v2/Users",
        # A control character would make the redirect's Location header a 500.
        "/admin/\n",
        "/admin/\r\nSet-Cookie: x=y",
        "/admin/\x1b[2J",
    ],
)
def test_sign_in_never_redirects_off_the_control_panel(app: Flask, target: str) -> None:
    create_admin(app)
    client = app.test_client()
    page = client.get("/admin/sign-in")
    response = client.post(
        "/admin/sign-in",
        data={
            "csrf_token": csrf_of(page),
            "username": USERNAME,
            "password": PASSWORD,
            "next": target,
        },
    )
    assert response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("query", ["next=/admin/%0A", "next=/admin/%0D%0AX-Forged:%201"])
def test_a_control_character_in_next_falls_back_to_the_home_page(app: Flask, query: str) -> None:
    """In the sign-in URL, and once signed in (the sign-in page then redirects at once)."""
    create_admin(app)
    client = app.test_client()
    page = client.get(f"/admin/sign-in?{query}")
    response = client.post(
        f"/admin/sign-in?{query}",
        data={"csrf_token": csrf_of(page), "username": USERNAME, "password": PASSWORD},
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/"

    again = client.get(f"/admin/sign-in?{query}")

    assert again.status_code == 302 and again.headers["Location"] == "/admin/"


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(app: Flask) -> None:
    create_admin(app)
    client = AdminClient(app.test_client())
    wrong_password = client.sign_in(password="not the password")
    unknown_user = client.sign_in(username="mallory")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert "Wrong username or password." in text(wrong_password)
    assert "Wrong username or password." in text(unknown_user)
    assert "not the password" not in text(wrong_password)


@pytest.mark.parametrize(
    "username",
    [
        "evil\x1b[31mRED\x1b[0m",
        "mallory\n2026-11-26T10:00:00Z  200  sign in  alice  token=-  client=10.0.0.1",
        "admin\u202egnp.exe",
    ],
    ids=["terminal-escape", "forged-line", "bidi-override"],
)
def test_a_sign_in_name_with_control_characters_is_refused_and_recorded_escaped(
    app: Flask, username: str
) -> None:
    create_admin(app)

    response = AdminClient(app.test_client()).sign_in(username=username)

    assert response.status_code == 400
    assert "no control characters" in text(response)
    event = next(app.extensions["proware.admin"].audit.newest_first())
    assert event["operation"] == "sign-in refused"
    assert event["reason"] == "unprintable-username"
    assert event["name"].isprintable()
    assert event["name"] == username.encode("unicode_escape").decode()


def test_repeated_failures_lock_the_account_and_the_page_says_until_when(app: Flask) -> None:
    create_admin(app)
    client = AdminClient(app.test_client())
    statuses = [client.sign_in(password=f"guess {n}").status_code for n in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    locked = client.sign_in()  # the right password, too late
    assert locked.status_code == 429
    page = text(locked)
    assert re.search(r"this account is locked until \d\d:\d\d UTC \(about 15 minutes\)", page)
    assert "admin reset-password" in page
    assert client.get("/admin/settings").status_code == 302


def test_a_lock_with_under_a_minute_left_says_about_1_minute(app: Flask) -> None:
    """The count agrees with its noun: "about 1 minute", not "about 1 minutes"."""
    create_admin(app)
    client = AdminClient(app.test_client())
    for n in range(5):
        client.sign_in(password=f"guess {n}")
    admin = app.extensions["proware.admin"]
    started = admin.clock()
    # The page's clock 14 min 20 s on (the accounts' own clock still holds the lock).
    admin.clock = lambda: started + timedelta(minutes=14, seconds=20)

    page = text(client.sign_in())

    assert re.search(r"locked until \d\d:\d\d UTC \(about 1 minute\)\. Try again then", page)


def test_an_account_and_an_unknown_name_cost_the_same_hashing_locked_or_not(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing tells a locked account from an unknown name no more than the page does: both
    paths hash the password as often (counted, not timed)."""
    create_admin(app)
    client = AdminClient(app.test_client())
    hashed: list[str] = []
    check = accounts_module.check_password_hash

    def counting_check(pwhash: str, password: str) -> bool:
        hashed.append(password)
        return check(pwhash, password)

    monkeypatch.setattr(accounts_module, "check_password_hash", counting_check)

    def hashes_of(name: str, password: str, status: int) -> int:
        before = len(hashed)
        assert client.sign_in(username=name, password=password).status_code == status
        return len(hashed) - before

    unlocked = {name: hashes_of(name, "guess 0", 401) for name in (USERNAME, "mallory")}
    for name in (USERNAME, "mallory"):
        for number in range(1, 5):
            client.sign_in(username=name, password=f"guess {number}")
    locked = {name: hashes_of(name, "guess 5", 429) for name in (USERNAME, "mallory")}

    assert unlocked[USERNAME] == unlocked["mallory"] == 1
    assert locked[USERNAME] == locked["mallory"]


def test_the_sign_in_page_explains_the_first_run(app: Flask) -> None:
    page = text(app.test_client().get("/admin/sign-in"))
    assert "No admin account exists yet" in page
    assert "admin create USERNAME" in page


def test_the_first_run_note_goes_once_an_admin_exists(app: Flask) -> None:
    create_admin(app)
    page = text(app.test_client().get("/admin/sign-in"))
    assert "No admin account exists yet" not in page
    assert 'id="no-local-account"' not in page


# -- first-run setup ---------------------------------------------------------------------------


# What link previews send: no cookies, a bot's User-Agent (Teams, Slack, Safe Links).
PREVIEWERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36 Edg/124.0 (compatible; MSOffice 16; SkypeUriPreview)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
]
FIRST_ADMIN = {"username": "root", "password": PASSWORD, "confirm": PASSWORD}


def issue_setup_link(app: Flask) -> str:
    """The path of a fresh setup link, as ``serve`` prints it."""
    return f"/admin/setup/{app.extensions['proware.admin'].setup.issue()}"


def setup_state(app: Flask) -> dict:
    return app.extensions["proware.admin"].setup.document.read()


def admin_names(app: Flask) -> list[str]:
    return [account.username for account in app.extensions["proware.admin"].accounts.list()]


def test_the_setup_link_lets_the_first_admin_choose_a_password(app: Flask) -> None:
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    form = client.get(link)
    assert form.status_code == 200 and "Create admin account" in text(form)
    assert f'action="{link}"' in text(form)
    response = client.submit(link, link, FIRST_ADMIN)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/sign-in"
    assert "Admin account &#39;root&#39; created" in text(client.get("/admin/sign-in"))
    assert client.sign_in(username="root").status_code == 302


@pytest.mark.parametrize("user_agent", PREVIEWERS, ids=["teams", "slack"])
def test_a_preview_of_the_setup_link_leaves_it_for_the_person(app: Flask, user_agent: str) -> None:
    """A chat app or mail scanner opens the link first: the person can still set up."""
    link = issue_setup_link(app)
    before = setup_state(app)
    for method in ("GET", "HEAD"):
        preview = app.test_client().open(link, method=method, headers={"User-Agent": user_agent})
        assert preview.status_code == 200
    assert setup_state(app) == before  # nothing spent, nothing a later visit depends on

    person = AdminClient(app.test_client())
    response = person.submit(link, link, FIRST_ADMIN)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/sign-in"
    assert admin_names(app) == ["root"]


def test_a_used_setup_link_says_so_and_creates_nothing_more(app: Flask) -> None:
    link = issue_setup_link(app)
    late = AdminClient(app.test_client())
    token = csrf_of(late.get(link))  # opened before the first admin was created
    assert AdminClient(app.test_client()).submit(link, link, FIRST_ADMIN).status_code == 302

    page = app.test_client().get(link)
    assert page.status_code == 410
    assert "This setup link has been used" in text(page)
    assert "admin reset-password USERNAME" in text(page)
    again = late.client.post(link, data={"csrf_token": token, **FIRST_ADMIN, "username": "mallory"})
    assert again.status_code == 410 and "This setup link has been used" in text(again)
    assert admin_names(app) == ["root"]


def test_a_start_leaves_the_link_an_earlier_start_printed_working(app: Flask) -> None:
    """Two server processes on PostgreSQL each print a link at start: the second start made
    the first one's link "not valid" (measured with two `serve` behind nginx), and so did
    any restart. Either link now creates the one admin, and uses up the other."""
    printed: list[str] = []
    for _ in range(2):  # another process's start, or a restart
        on_serve(app, "python app.py", "http://127.0.0.1:8000", out=printed.append)
    first, second = [re.search(r"8000(/admin/setup/\S+)", line).group(1) for line in printed]

    assert [app.test_client().get(link).status_code for link in (first, second)] == [200, 200]
    assert AdminClient(app.test_client()).submit(first, first, FIRST_ADMIN).status_code == 302
    page = app.test_client().get(second)
    assert page.status_code == 410 and "This setup link has been used" in text(page)
    assert admin_names(app) == ["root"]


def test_of_two_setup_posts_at_once_exactly_one_creates_an_admin(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second POST arrives while the first is creating its admin: it gets "used"."""
    link = issue_setup_link(app)
    first, second = AdminClient(app.test_client()), AdminClient(app.test_client())
    first_token, second_token = csrf_of(first.get(link)), csrf_of(second.get(link))
    accounts = app.extensions["proware.admin"].accounts
    create = accounts.create
    answers = {}

    def post_second() -> None:
        data = {"csrf_token": second_token, **FIRST_ADMIN, "username": "bob"}
        answers["second"] = second.client.post(link, data=data)

    def create_while_the_other_posts(username: str, password: str, **fields):
        if username == "root":
            other = threading.Thread(target=post_second)
            other.start()
            other.join()
        return create(username, password, **fields)

    monkeypatch.setattr(accounts, "create", create_while_the_other_posts)
    answers["first"] = first.client.post(link, data={"csrf_token": first_token, **FIRST_ADMIN})

    assert admin_names(app) == ["root"]
    assert answers["first"].status_code == 302
    assert answers["second"].status_code == 410
    assert "This setup link has been used" in text(answers["second"])


def test_an_expired_setup_link_says_so_and_what_prints_a_new_one(app: Flask) -> None:
    admin = app.extensions["proware.admin"]
    issued = admin.setup.clock()
    admin.setup.clock = lambda: issued  # the expiry shown is to the second: no tick between
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    token = csrf_of(client.get(link))
    later = issued + admin.setup.lifetime
    admin.setup.clock = lambda: later

    page = app.test_client().get(link)
    assert page.status_code == 410
    assert "This setup link has expired" in text(page)
    assert f"expired on {later:%Y-%m-%d %H:%M:%S} UTC" in text(page)
    assert "python app.py admin setup-link" in text(page)
    response = client.client.post(link, data={"csrf_token": token, **FIRST_ADMIN})
    assert response.status_code == 410 and "This setup link has expired" in text(response)
    assert not admin.accounts.any()


@pytest.mark.parametrize("path", ["/admin/setup/not-the-secret", "/admin/setup"])
def test_an_unknown_setup_link_says_what_prints_a_new_one(app: Flask, path: str) -> None:
    issue_setup_link(app)
    page = app.test_client().get(path)
    assert page.status_code == 404
    assert "This setup link is not valid" in text(page)
    assert "python app.py admin setup-link" in text(page)


def test_setup_link_pages_keep_the_secret_from_referrers_and_caches(app: Flask) -> None:
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    weak = {**FIRST_ADMIN, "password": "short", "confirm": "short"}
    answers = {
        "form": client.get(link),
        "refused": client.submit(link, link, weak),
        "forged": client.client.post(link, data=FIRST_ADMIN),
        "unknown": client.get("/admin/setup/nothing"),
        "created": client.submit(link, link, FIRST_ADMIN),
        "used": client.get(link),
    }
    assert [a.status_code for a in answers.values()] == [200, 400, 400, 404, 302, 410]
    for name, answer in answers.items():
        assert answer.headers["Referrer-Policy"] == "no-referrer", name
        assert answer.headers["Cache-Control"] == "no-store", name
    assert client.get("/admin/sign-in").headers["Referrer-Policy"] == "same-origin"


def test_the_access_log_leaves_out_the_setup_links_secret(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proware.access")
    link = issue_setup_link(app)
    secret = link.rpartition("/")[2]
    client = AdminClient(app.test_client())
    client.get(f"{link}?utm_source=teams")
    client.submit(link, link, FIRST_ADMIN)

    lines = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert any('"GET /admin/setup/[redacted]?utm_source=teams" 200' in line for line in lines)
    assert any('"POST /admin/setup/[redacted]" 302' in line for line in lines)
    assert not [line for line in lines if secret in line]


def test_setup_refuses_differing_or_weak_passwords_and_keeps_the_link(app: Flask) -> None:
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    differ = client.submit(link, link, {**FIRST_ADMIN, "confirm": "x"})
    assert differ.status_code == 400 and "The two passwords differ." in text(differ)
    weak = client.submit(link, link, {**FIRST_ADMIN, "password": "short", "confirm": "short"})
    assert weak.status_code == 400 and "at least 12 characters" in text(weak)
    bad_name = client.submit(link, link, {**FIRST_ADMIN, "username": "root user"})
    assert bad_name.status_code == 400 and "is not allowed" in text(bad_name)
    assert not app.extensions["proware.admin"].accounts.any()
    assert client.submit(link, link, FIRST_ADMIN).status_code == 302


@pytest.mark.parametrize(
    ("password", "message"),
    [(" " * 12, "only spaces"), ("a" * 12, "at least 4 different characters")],
    ids=["spaces", "one-character"],
)
def test_setup_refuses_a_password_of_spaces_or_one_repeated_character(
    app: Flask, password: str, message: str
) -> None:
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    weak = client.submit(link, link, {**FIRST_ADMIN, "password": password, "confirm": password})
    assert weak.status_code == 400 and message in text(weak)
    assert "4 or more of them different" in text(client.get(link))
    assert not app.extensions["proware.admin"].accounts.any()


def test_a_setup_link_gives_way_to_an_admin_created_on_the_command_line(app: Flask) -> None:
    link = issue_setup_link(app)
    client = AdminClient(app.test_client())
    token = csrf_of(client.get(link))
    create_admin(app)
    page = client.get(link)
    assert page.status_code == 410 and "The control panel is set up" in text(page)
    response = client.client.post(link, data={"csrf_token": token, **FIRST_ADMIN})
    assert response.status_code == 410
    assert admin_names(app) == [USERNAME]


def test_serve_prints_the_setup_link_only_while_no_admin_exists(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    (serve_hook,) = app.extensions["serve_hooks"]  # what server.commands.serve runs
    serve_hook("python app.py", "http://127.0.0.1:8000")
    printed = capsys.readouterr().out
    link = re.search(r"http://127\.0\.0\.1:8000(/admin/setup/\S+)", printed)
    assert link, printed
    assert "python app.py admin create USERNAME" in printed
    assert app.test_client().get(link.group(1)).status_code == 200
    create_admin(app)
    serve_hook("python app.py", "http://127.0.0.1:8000")
    assert capsys.readouterr().out == "  Control panel: http://127.0.0.1:8000/admin\n"


# -- Control panel settings --------------------------------------------------------------------


def test_the_settings_page_uses_the_setup_guides_words(panel: AdminClient) -> None:
    page = text(panel.get("/admin/settings"))
    for label in (
        "Control panel",
        "Admin",
        "Control panel settings",
        "User Provisioning",
        "Create bearer token",
        "Tenant URL",
        "Test Connection",
        "Connection status",
    ):
        assert label in page, label
    assert re.search(r"Control panel</a></li>\s*<li><a [^>]*>Admin</a></li>\s*<li><span", page)


def test_the_switch_enables_and_disables_user_provisioning(app: Flask, panel: AdminClient) -> None:
    switch = app.extensions["proware"].switch
    panel.submit("/admin/settings", "/admin/settings/provisioning", {"enabled": "1"})
    assert switch.status() | {"changed": None} == {
        "enabled": True,
        "changed": None,
        "changed_by": "admin:alice",
    }
    assert 'id="provisioning-state">Enabled<' in text(panel.get("/admin/settings"))
    panel.submit("/admin/settings", "/admin/settings/provisioning", {"enabled": "0"})
    assert not switch.enabled()


def _token_name_field(response) -> str:
    found = re.search(r'<input id="token-name"[^>]*value="([^"]*)"', text(response))
    assert found, "no Name field on the page"
    return found.group(1)


def test_the_first_token_is_named_entra_until_that_name_is_taken(panel: AdminClient) -> None:
    """Pressing Create bearer token is the whole step the first time; then the name is free
    to choose again (a second "entra" would be refused)."""
    assert _token_name_field(panel.get("/admin/settings")) == "entra"
    created = panel.submit("/admin/settings", "/admin/settings/tokens", {"name": "entra"})
    assert _token_name_field(created) == ""
    assert _token_name_field(panel.get("/admin/settings")) == ""
    panel.submit("/admin/settings", "/admin/settings/tokens/revoke", {"name": "entra"})
    assert _token_name_field(panel.get("/admin/settings")) == "entra"


def test_a_new_token_is_shown_once_and_works(app: Flask, panel: AdminClient, client) -> None:
    app.extensions["proware"].switch.set(True)
    secret = panel.create_token("entra")
    assert secret.startswith("pw_")
    assert secret not in text(panel.get("/admin/settings"))
    response = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200
    info = app.extensions["proware"].tokens.list()[0]
    assert (info.name, info.scope, info.created_by) == ("entra", "read-write", "admin:alice")


def test_the_new_token_page_warns_it_will_not_be_shown_again(panel: AdminClient) -> None:
    response = panel.submit(
        "/admin/settings", "/admin/settings/tokens", {"name": "entra", "scope": "read-only"}
    )
    page = text(response)
    assert "it is shown only this once" in page
    assert 'data-copy="new-token"' in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "read-only token “entra”" in page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"name": ""}, "is not allowed", id="no-name"),
        pytest.param({"name": "entra", "expires_days": "0"}, "from 1 to 3650", id="zero-days"),
        pytest.param({"name": "entra", "expires_days": "soon"}, "whole number", id="text-days"),
        # A digit to str.isdigit that int() refuses: the same sentence, not int()'s.
        pytest.param({"name": "entra", "expires_days": "²"}, "whole number", id="superscript"),
    ],
)
def test_token_form_errors_are_shown_and_create_nothing(
    app: Flask, panel: AdminClient, fields: dict, message: str
) -> None:
    response = panel.submit("/admin/settings", "/admin/settings/tokens", fields)
    assert response.status_code == 400
    assert message in text(response)
    assert app.extensions["proware"].tokens.list() == []


@pytest.mark.parametrize(
    "path", ["/admin/activity", "/admin/directory/users", "/admin/directory/groups"]
)
@pytest.mark.parametrize("number", ["²", "0", "-3", "x"])
def test_a_page_number_that_is_none_shows_the_first_page(
    panel: AdminClient, path: str, number: str
) -> None:
    """A superscript "²" is a digit to str.isdigit that int() refuses: the activity page
    answered 500."""
    first = text(panel.get(path))

    assert text(panel.get(path, query_string={"page": number})) == first


def test_a_second_active_token_with_the_same_name_is_refused(panel: AdminClient) -> None:
    panel.create_token("entra")
    response = panel.submit("/admin/settings", "/admin/settings/tokens", {"name": "entra"})
    assert response.status_code == 400
    assert "already exists" in text(response)


@pytest.mark.parametrize(
    ("form", "invalid", "valid", "says"),
    [
        ({"name": "entra", "expires_days": "0"}, "token-expiry", "token-name", "Expiry must be"),
        ({"name": "a/b"}, "token-name", "token-expiry", "Token name"),
    ],
)
def test_a_refused_token_marks_and_focuses_the_field_it_is_about(
    panel: AdminClient, form: dict, invalid: str, valid: str, says: str
) -> None:
    page = text(panel.submit("/admin/settings", "/admin/settings/tokens", form))

    assert f'<div class="notice error" role="alert" id="token-error">{says}' in page
    field = re.search(rf'<input id="{invalid}"[^>]*>', page).group(0)
    assert 'aria-describedby="token-error ' in field
    assert 'aria-invalid="true" autofocus' in field
    other = re.search(rf'<input id="{valid}"[^>]*>', page).group(0)
    assert "token-error" not in other and "aria-invalid" not in other


def test_the_tokens_table_warns_when_expiry_is_near(panel: AdminClient) -> None:
    panel.create_token("soon", expires_days="7")
    panel.create_token("later", expires_days="90")
    page = text(panel.get("/admin/settings"))
    assert page.count("rotate it now") == 1
    assert "expires in 7 days" in page


def test_revoke_asks_for_confirmation_then_the_token_gets_401(
    app: Flask, panel: AdminClient, client
) -> None:
    app.extensions["proware"].switch.set(True)
    secret = panel.create_token("entra")
    confirm = panel.get("/admin/settings/tokens/revoke?name=entra")
    assert confirm.status_code == 200
    assert "Revoke token “entra”?" in text(confirm)
    assert app.extensions["proware"].tokens.list()[0].status == "active"
    done = panel.submit(
        "/admin/settings/tokens/revoke?name=entra",
        "/admin/settings/tokens/revoke",
        {"name": "entra"},
    )
    assert done.status_code == 302
    response = client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    page = text(panel.get("/admin/settings"))
    assert "Token &#39;entra&#39; revoked" in page
    assert "Revoked token" in page and "Create a new bearer token" in page


def test_head_is_a_get_on_every_page_that_also_takes_a_post(app: Flask, panel: AdminClient) -> None:
    """Flask routes HEAD to the view: it must take the GET branch, never the POST one."""
    panel.create_token("entra")
    stranger = app.test_client()

    revoke = panel.client.head("/admin/settings/tokens/revoke?name=entra")
    sign_in = stranger.head("/admin/sign-in")  # the POST branch refused an empty password

    assert revoke.status_code == 200
    assert app.extensions["proware"].tokens.list()[0].status == "active"
    assert sign_in.status_code == 200


def test_revoking_an_unknown_token_says_so(panel: AdminClient) -> None:
    response = panel.get("/admin/settings/tokens/revoke?name=ghost")
    assert response.status_code == 302
    assert "no active token named &#39;ghost&#39;" in text(panel.get("/admin/settings"))


def test_the_tenant_url_is_built_from_the_request_by_default(panel: AdminClient) -> None:
    page = text(panel.get("/admin/settings"))
    assert (
        'id="tenant-url-value" class="mono wide" type="text" readonly value="http://localhost/scim/v2"'
        in page
    )


def test_the_tenant_url_honours_public_url(settings: Settings) -> None:
    configured = replace(settings, server=ServerSettings(public_url="https://proware.example.com/"))
    app = create_app(configured)
    try:
        page = text(signed_in(app).get("/admin/settings"))
        assert 'readonly value="https://proware.example.com/scim/v2"' in page
    finally:
        app.extensions["proware.backend"].close()  # on PostgreSQL, its serving lock too


def test_connection_status_shows_the_probe_and_refusals_per_token(
    app: Flask, panel: AdminClient, client, scim: ScimClient
) -> None:
    client.get(
        f"/scim/v2/Users?filter=userName+eq+%22{GUID}%22",
        headers={"Authorization": f"Bearer {scim.token}"},
    )
    for _ in range(3):
        client.get("/scim/v2/Users", headers={"Authorization": "Bearer eyJhbGciOi.eyJzdWIi.c2ln"})
    page = text(panel.get("/admin/settings"))
    assert "Token “entra”" in page
    assert "Test Connection probe: no match, as Entra expects" in page
    assert "Requests without a valid token" in page
    assert "Entra&#39;s own JWT: the Secret Token field is empty" in page
    assert re.search(r'<td class="num">3</td>', page)


def test_a_new_token_with_a_revoked_ones_name_starts_with_no_use_history(
    app: Flask, panel: AdminClient, client
) -> None:
    app.extensions["proware"].switch.set(True)
    other = panel.create_token("other")
    client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {other}"})  # saved at once
    old = panel.create_token("rot")
    client.get(  # Test Connection, within the minute: its use waits for the minute's end
        f"/scim/v2/Users?filter=userName+eq+%22{GUID}%22",
        headers={"Authorization": f"Bearer {old}"},
    )
    panel.submit(
        "/admin/settings/tokens/revoke?name=rot", "/admin/settings/tokens/revoke", {"name": "rot"}
    )
    panel.create_token("rot")

    page = text(panel.get("/admin/settings"))

    rows = re.findall(r"<tr>\s*<td><strong>rot</strong>(.*?)</tr>", page, re.S)
    last_used = {
        "revoked" if "revoked" in row else "active": re.findall(r"<td>(.*?)</td>", row, re.S)[3]
        for row in rows
    }
    assert last_used["active"] == "never" and last_used["revoked"] != "never"
    sections = [
        chunk.split("</section>")[0]
        for chunk in page.split('<div class="connection"')[1:]
        if 'data-token="rot"' in chunk
    ]
    assert len(sections) == 2
    new_section, revoked_section = sections
    assert "no probe seen yet" in new_section and "No requests with this token yet" in new_section
    assert "revoked" in revoked_section and "Test Connection probe: no match" in revoked_section


# -- Provisioning activity ---------------------------------------------------------------------


def test_activity_lists_events_newest_first_with_a_summary(
    app: Flask, panel: AdminClient, scim: ScimClient, client
) -> None:
    ann = scim.create_user("ann", active=True)
    scim.create_user("bob", active=True)
    scim.patch_ops(f"/Users/{ann['id']}", {"op": "replace", "path": "active", "value": False})
    scim.create_group("Sales", [ann["id"]])
    client.get("/scim/v2/Users", headers={"Authorization": "Bearer pw_nope"})
    page = text(panel.get("/admin/activity"))
    summary = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", page))
    assert summary == {
        "Users": "2",
        "Active": "1",
        "Disabled": "1",
        "Groups": "1",
        "Provisioning errors in the last 24 hours": "1",
        "Refused sign-ins in the last 24 hours": "0",
    }
    assert "Last provisioning request" in page
    operations = re.findall(r"<td>(create|disable|refused)</td>", page)
    assert operations == ["refused", "create", "disable", "create", "create"]


def test_a_user_created_without_active_is_not_shown_as_active(
    panel: AdminClient, scim: ScimClient
) -> None:
    """RFC 7643 §4.1.1 gives active no default: a user no client said is active is shown and
    counted as single sign-on treats it (refused), not as active."""
    plain = scim.create_user("plain")
    scim.create_user("ann", active=True)

    summary_page = text(panel.get("/admin/activity"))
    summary = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", summary_page))
    user_page = text(panel.get(f"/admin/directory/users/{plain['id']}"))
    list_page = text(panel.get("/admin/directory/users"))

    assert "active" not in scim.get(f"/Users/{plain['id']}").get_json()
    assert (summary["Users"], summary["Active"], summary["Disabled"]) == ("2", "1", "0")
    assert summary["Not active (no status sent)"] == "1"
    assert "not active (no status sent)" in user_page
    assert 'class="badge on">active' not in user_page
    assert list_page.count("not active (no status sent)") == 1
    assert list_page.count('class="badge on">active') == 1


def test_the_summary_counts_refused_sign_ins_apart_from_provisioning_errors(
    app: Flask, panel: AdminClient, client
) -> None:
    AdminClient(app.test_client()).sign_in(password="not the password")
    AdminClient(app.test_client()).sign_in(username="mallory")
    client.get("/scim/v2/Users", headers={"Authorization": "Bearer pw_nope"})

    page = text(panel.get("/admin/activity"))

    summary = dict(re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", page))
    assert summary["Provisioning errors in the last 24 hours"] == "1"
    assert summary["Refused sign-ins in the last 24 hours"] == "2"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("outcome=refused", ["refused"], id="outcome"),
        pytest.param("outcome=failed", ["failed"], id="failed"),
        pytest.param("operation=disable", ["disable"], id="operation"),
        pytest.param("token=reader", ["create"], id="token"),
        pytest.param("q=bob", ["create"], id="text"),
    ],
)
def test_activity_filters(
    app: Flask, panel: AdminClient, scim: ScimClient, scim_for, client, query: str, expected: list
) -> None:
    ann = scim.create_user("ann")
    scim.patch_ops(f"/Users/{ann['id']}", {"op": "replace", "path": "active", "value": False})
    scim.post("/Users", {"userName": "ANN"})  # 409
    client.get("/scim/v2/Users")  # 401
    scim_for(app, name="reader").create_user("bob")
    page = text(panel.get(f"/admin/activity?{query}"))
    assert re.findall(r"<td>(create|disable|refused|failed)</td>", page) == expected


@pytest.mark.parametrize(
    ("name", "query"),
    [
        pytest.param("Bob.Smith@contoso.example", "bob.SMITH", id="other-case"),
        pytest.param("\u212aate@contoso.example", "kate", id="kelvin-sign-folds-to-k"),
        pytest.param("Ste\u017fan@contoso.example", "STESAN", id="long-s-folds-to-s"),
        pytest.param("bob@contoso.example", "SMITH bob", id="across-fields-not-found"),
    ],
)
def test_the_text_filter_finds_a_name_in_any_case(
    app: Flask, panel: AdminClient, name: str, query: str
) -> None:
    """The log is searched in its text before events are decoded: what only Python's case
    folding matches (a line with other characters than ASCII) must still be found."""
    log = app.extensions["proware.admin"].audit
    log.append({"time": "2026-11-26T10:00:00Z", "operation": "create", "name": "someone else"})
    log.append({"time": "2026-11-26T10:00:01Z", "operation": "create", "name": name})
    page = text(panel.get("/admin/activity", query_string={"q": query}))
    found = re.findall(r"<td>create</td>", page)
    assert len(found) == (0 if " " in query else 1)


def test_activity_is_paged(app: Flask, panel: AdminClient) -> None:
    log = app.extensions["proware.admin"].audit
    for number in range(60):
        log.append({"time": "2026-11-26T10:00:00Z", "operation": "create", "name": f"u{number}"})
    first = text(panel.get("/admin/activity"))
    second = text(panel.get("/admin/activity?page=2"))
    assert "u59" in first and "u10" in first and "u9<" not in first
    assert ">Next<" in first and ">Previous<" not in first
    assert "u9<" in second and "u0<" in second and ">Next<" not in second


def test_activity_without_events_says_what_will_appear(app: Flask, panel: AdminClient) -> None:
    forget_activity(app)  # the sign-in's own event
    assert "No provisioning activity yet" in text(panel.get("/admin/activity"))


def test_signing_in_is_recorded_in_the_activity_log(panel: AdminClient) -> None:
    page = text(panel.get("/admin/activity?operation=sign+in"))
    assert "sign in" in page and "alice" in page


# -- Directory ---------------------------------------------------------------------------------


def test_users_are_searchable_and_paged(app: Flask, panel: AdminClient, scim: ScimClient) -> None:
    for number in range(30):
        scim.create_user(f"user{number:02d}@example.com", displayName=f"User {number}")
    first = text(panel.get("/admin/directory/users"))
    assert "1–25 of 30" in first and "user00@example.com" in first
    second = text(panel.get("/admin/directory/users?page=2"))
    assert "26–30 of 30" in second and "user29@example.com" in second
    found = text(panel.get("/admin/directory/users?q=User+17"))
    assert "1–1 of 1" in found and "user17@example.com" in found


def test_a_search_with_quotes_is_taken_literally(panel: AdminClient, scim: ScimClient) -> None:
    scim.create_user('o"brien')
    page = text(panel.get('/admin/directory/users?q=o"b'))
    assert "1–1 of 1" in page


def test_a_user_page_shows_attributes_groups_dates_and_events(
    panel: AdminClient, scim: ScimClient
) -> None:
    ann = scim.create_user(
        "ann@example.com",
        name={"givenName": "Ann"},
        emails=[{"value": "ann@example.com", "type": "work", "primary": True}],
    )
    group = scim.create_group("Sales", [ann["id"]])
    page = text(panel.get(f"/admin/directory/users/{ann['id']}"))
    assert "name.givenName" in page and "Ann" in page
    assert "ann@example.com (type: work, primary: true)" in page
    assert f'/admin/directory/groups/{group["id"]}">Sales</a>' in page
    assert "Created" in page and "Last modified" in page
    assert "Recent events" in page and "<td>create</td>" in page
    assert "source of truth" in page and "InvalidAnchor" in page


def test_a_group_page_lists_its_members(panel: AdminClient, scim: ScimClient) -> None:
    ann = scim.create_user("ann", displayName="Ann Smith")
    group = scim.create_group("Sales", [ann["id"]])
    page = text(panel.get(f"/admin/directory/groups/{group['id']}"))
    assert "Members (1)" in page and "Ann Smith" in page
    groups = text(panel.get("/admin/directory/groups"))
    assert "Sales" in groups and '<td class="num">1</td>' in groups


MARKUP = '<img src=x onerror="alert(1)">'


@pytest.mark.parametrize(
    "page",
    ["users", "user", "groups", "group", "activity"],
)
def test_directory_values_written_over_scim_are_shown_as_text_not_markup(
    panel: AdminClient, scim: ScimClient, page: str
) -> None:
    """Any client holding a token writes what the panel shows an admin: a name carrying
    markup must reach the admin's browser escaped (stored XSS otherwise), on each page that
    shows it."""
    ann = scim.create_user(f"ann{MARKUP}", displayName=f"Ann {MARKUP}", title=MARKUP)
    group = scim.create_group(f"Sales {MARKUP}", [ann["id"]])
    path = {
        "users": "/admin/directory/users",
        "user": f"/admin/directory/users/{ann['id']}",
        "groups": "/admin/directory/groups",
        "group": f"/admin/directory/groups/{group['id']}",
        "activity": "/admin/activity",
    }[page]

    shown = text(panel.get(path))

    assert "<img" not in shown
    assert "&lt;img src=x onerror=" in shown


def test_a_big_groups_page_lists_its_members_a_page_at_a_time_by_name(
    panel: AdminClient, scim: ScimClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All 10,000 members of a big group made one page of 950 KB (0.8 s to build)."""
    monkeypatch.setattr(views_directory, "MEMBERS_PAGE_SIZE", 3)
    ids = [scim.create_user(f"u{n}", displayName=f"Name {'edbca'[n]}")["id"] for n in range(5)]
    group = scim.create_group("Sales", ids)
    first = text(panel.get(f"/admin/directory/groups/{group['id']}"))
    assert "Members (5)" in first and "1–3 of 5" in first
    assert re.findall(r">Name (\w)</a>", first) == ["a", "b", "c"]
    assert f'href="/admin/directory/groups/{group["id"]}?page=2#members">Next' in first
    second = text(panel.get(f"/admin/directory/groups/{group['id']}?page=2"))
    assert re.findall(r">Name (\w)</a>", second) == ["d", "e"]
    assert "4–5 of 5" in second and ">Next<" not in second


def test_an_empty_directory_list_says_why_and_what_to_do(
    panel: AdminClient, scim: ScimClient
) -> None:
    """The lists said only "Nothing found", for a search that matched nothing and for a
    directory Entra had not filled yet alike."""
    fresh = text(panel.get("/admin/directory/users"))
    assert "No users yet. Entra creates them here once User Provisioning is" in fresh
    scim.create_group("Sales")
    searched = text(panel.get("/admin/directory/groups?q=nomatch"))
    assert "No groups match “nomatch”." in searched
    assert "Nothing found" not in fresh + searched


def test_a_page_past_the_end_of_a_list_says_so_and_links_to_the_last(
    panel: AdminClient, scim: ScimClient
) -> None:
    """Page 9 of 2 users read "201–200 of 2"."""
    scim.create_user("ann")
    scim.create_user("bob")
    page = text(panel.get("/admin/directory/users?page=9&q=a"))
    assert "Page 9 is past the end of the list, which has 1 in\n1 page." in page
    assert 'href="/admin/directory/users?page=1&amp;q=a">Go to the last page' in page
    assert "201–200" not in page


def test_an_activity_page_past_the_last_event_does_not_say_there_is_no_activity(
    panel: AdminClient, scim: ScimClient
) -> None:
    scim.create_user("ann")
    page = text(panel.get("/admin/activity?page=7&operation=create"))
    assert "No provisioning activity yet" not in page
    assert "Page 7 is past the last event that matches these filters." in page
    assert 'href="/admin/activity?operation=create">Go to the first page' in page


def test_an_unfiltered_activity_page_past_the_last_event_says_so_at_any_number(
    panel: AdminClient, scim: ScimClient
) -> None:
    """Such a page leaves the events before it unread; a number beyond any count too."""
    scim.create_user("ann")
    for number in ("7", "9" * 30):
        page = text(panel.get(f"/admin/activity?page={number}"))
        assert f"Page {number} is past the last event. " in page


def test_the_directory_offers_no_way_to_change_anything(
    panel: AdminClient, scim: ScimClient
) -> None:
    ann = scim.create_user("ann")
    page = text(panel.get(f"/admin/directory/users/{ann['id']}"))
    assert 'method="post"' not in page.replace('class="signout" method="post"', "")


def test_an_unknown_user_is_an_html_404(panel: AdminClient) -> None:
    response = panel.get("/admin/directory/users/nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no user with id &#39;nope&#39;" in text(response)


# -- errors and headers ------------------------------------------------------------------------


def test_admin_errors_are_pages_while_scim_errors_stay_json(panel: AdminClient, client) -> None:
    missing = panel.get("/admin/no-such-page")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert "Page not found" in text(missing)
    wrong_method = client.delete("/admin/settings")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "text/html"
    assert "GET" in wrong_method.headers["Allow"]
    scim_missing = client.get("/scim/v2/Nope")
    assert scim_missing.mimetype == "application/scim+json"


def test_an_unexpected_error_is_a_page_with_the_request_id_and_no_exception_text(
    app: Flask, panel: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions["proware"].directory, "query", broken)
    response = panel.get("/admin/directory/users")
    assert response.status_code == 500 and response.mimetype == "text/html"
    assert response.headers["X-Request-Id"] in text(response)
    assert "secret internals" not in text(response)


def test_pages_are_not_cached_framed_or_sniffed(panel: AdminClient) -> None:
    response = panel.get("/admin/settings")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_stylesheet_and_script_are_public(app: Flask) -> None:
    client = app.test_client()
    for name in ("admin.css", "copy.js", "icon.svg"):
        with client.get(f"/admin/static/{name}") as response:
            assert response.status_code == 200
