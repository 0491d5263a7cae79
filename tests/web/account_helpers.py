"""Helpers for the account tests: a cookie-keeping client, the CSRF field of a form, and the
sign-up / sign-in / new-token form posts as a browser sends them."""

from __future__ import annotations

import re
from html import unescape

import httpx

PASSWORD = "correct horse battery"


def csrf_of(html: str, action: str | None = None) -> str:
    """The csrf field of the form posting to `action` (the first form with one when None)."""
    forms = re.findall(r'<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>', html, re.S)
    for target, body in forms:
        found = re.search(r'name="csrf" value="([^"]*)"', body)
        if found and (action is None or unescape(target) == action):
            return found.group(1)
    raise AssertionError(f"no form posting to {action!r}")


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, follow_redirects=False)


def sign_up(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_of(client.get("/join").text, "/join")
    return client.post("/join", data={"name": name, "password": password, "password2": password, "csrf": token})


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD, next_: str = "/") -> httpx.Response:
    token = csrf_of(client.get("/login").text, "/login")
    return client.post("/login", data={"name": name, "password": password, "csrf": token, "next": next_})


def new_token(client: httpx.Client, name: str, role: str) -> str:
    csrf = csrf_of(client.get("/settings/tokens").text, "/settings/tokens")
    r = client.post("/settings/tokens", data={"name": name, "role": role, "csrf": csrf})
    assert r.status_code == 200, r.text
    return re.search(r'<code id="new-token">(hv_[^<]+)</code>', r.text).group(1)
