"""The admin page and its JSON API: clients, grants and the newest audit events, for the subjects [admin] lists,
signed in through Bastion's own sign-in methods (account/sessions.py). The same Administration as
`bastion admin`, so an action means the same everywhere, and each is an audit event naming the admin.

  GET  /admin                          the page (the sign-in page when signed out; 403 for anyone else)
  POST /admin/clients/revoke           revoke every grant of a client (it stays registered)
  POST /admin/clients/delete           revoke every grant of a client, then delete it
  POST /admin/grants/revoke            end a grant and every token it issued
  GET  /admin/api/session              who is signed in, and the CSRF token a DELETE carries (X-CSRF-Token)
  GET  /admin/api/clients              GET /admin/api/clients/{client_id}      DELETE /admin/api/clients/{client_id}
  DELETE /admin/api/clients/{client_id}/grants
  GET  /admin/api/grants?user=&client= GET /admin/api/grants/{grant_id}        DELETE /admin/api/grants/{grant_id}
  GET  /admin/api/audit?limit=50&type=token.&subject=&client=&grant=&since=&until=
  POST /admin/connections/disconnect   forget a user's connected account, revoking it at the provider
  GET  /admin/api/connections?user=    DELETE /admin/api/users/{subject}/connections/{connection}

The API answers JSON only, errors as {"error", "error_description"}: 401 not signed in, 403 not an admin (or a
DELETE without the session's CSRF token, or from another site), 404 unknown. Its cookie is SameSite=Lax and
HttpOnly, so other sites can neither send it with a DELETE nor read the answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..oauth import forms
from ..oauth.pages import error_page, render
from ..ops.audit import Search, recent
from .pages import Area, when
from .sessions import AccountSession

PATH = "/admin"
API = "/admin/api"
NO_CLIENT = "No such client (it may have been deleted already)."
NO_GRANT = "No such grant (it may have been revoked already)."
EVENTS_SHOWN = 50
MAX_EVENTS = 1000


class AdminPages(Area):
    def routes(self) -> list[BaseRoute]:
        return [
            Route(PATH, self.show, methods=["GET"]),
            Route(f"{PATH}/clients/delete", self.delete_client, methods=["POST"]),
            Route(f"{PATH}/clients/revoke", self.revoke_client, methods=["POST"]),
            Route(f"{PATH}/grants/revoke", self.revoke_grant, methods=["POST"]),
            Route(f"{API}/session", self.api_session, methods=["GET"]),
            Route(f"{API}/clients", self.api_clients, methods=["GET"]),
            Route(f"{API}/clients/{{client_id:path}}/grants", self.api_client_grants, methods=["DELETE"]),
            Route(f"{API}/clients/{{client_id:path}}", self.api_client, methods=["GET", "DELETE"]),
            Route(f"{API}/grants", self.api_grants, methods=["GET"]),
            Route(f"{API}/grants/{{grant_id}}", self.api_grant, methods=["GET", "DELETE"]),
            Route(f"{API}/audit", self.api_audit, methods=["GET"]),
            Route(f"{PATH}/connections/disconnect", self.disconnect, methods=["POST"]),
            Route(f"{API}/connections", self.api_connections, methods=["GET"]),
            Route(f"{API}/users/{{subject}}/connections/{{connection}}", self.api_disconnect, methods=["DELETE"]),
        ]

    @staticmethod
    def by(session: AccountSession) -> str:
        return f"admin:{session.subject}"

    # --- the page ------------------------------------------------------------------------------------------
    async def show(self, request: Request) -> Response:
        session = await self.signed_in.session(request)
        if session is None:
            return await self.signed_in.sign_in_page(request, PATH, "administer this server")
        if session.subject not in self.admins:
            return _not_admin(session)
        clients = await self.administration.clients()
        grants = await self.administration.grant_list()
        per_client: dict[str, int] = {}
        for grant in grants:
            per_client[grant["client_id"]] = per_client.get(grant["client_id"], 0) + 1
        names = {client["client_id"]: client["client_name"] or "(unnamed)" for client in clients}
        events = await recent(self.administration.store, EVENTS_SHOWN)
        return self.page(
            request,
            session,
            "admin.html",
            "Administration",
            clients=[
                {
                    "client_id": c["client_id"],
                    "name": names[c["client_id"]],
                    "kind": "confidential" if c["confidential"] else "public",
                    "grants": per_client.get(c["client_id"], 0),
                    "expires": when(c["expires_at"]),
                }
                for c in clients
            ],
            grants=[
                {
                    "grant_id": g["grant_id"],
                    "subject": g["subject"],
                    "client": names.get(g["client_id"], g["client_id"]),
                    "scopes": " ".join(g["scopes"] or []) or "-",
                    "created": when(g["created_at"]),
                }
                for g in grants
            ],
            events=[{**e, "time": when(e.get("time"))} for e in reversed(events)],
            connections=self.administration.connected is not None,
            accounts=[
                {**a, "scopes": " ".join(a["scopes"]) or "-", "connected": when(a["connected_at"])}
                for a in await self.administration.connected_accounts()
            ],
        )

    async def delete_client(self, request: Request) -> Response:
        return await self._act(request, "client_id", self.administration.delete_client, NO_CLIENT)

    async def revoke_client(self, request: Request) -> Response:
        return await self._act(request, "client_id", self.administration.revoke_client, NO_CLIENT)

    async def revoke_grant(self, request: Request) -> Response:
        return await self._act(request, "grant_id", self.administration.revoke_grant, NO_GRANT)

    async def disconnect(self, request: Request) -> Response:
        checked = await self._admin_form(request)
        if isinstance(checked, Response):
            return checked
        session, fields = checked
        done = await self.administration.disconnect(
            fields.get("subject", ""), fields.get("connection", ""), self.by(session)
        )
        if done is None:
            return error_page("No such connected account (it may have been disconnected already).", 404)
        return RedirectResponse(PATH, 303, headers={"Cache-Control": "no-store"})

    async def _act(
        self, request: Request, field: str, action: Callable[[str, str], Awaitable[Any]], missing: str
    ) -> Response:
        """One form action of the page on the id in `field`: back to the page, or the page saying it is gone."""
        checked = await self._admin_form(request)
        if isinstance(checked, Response):
            return checked
        session, fields = checked
        done = await action(fields.get(field, ""), self.by(session))
        if done is None or done is False:  # (a count of 0 grants revoked is done)
            return error_page(missing, 404)
        return RedirectResponse(PATH, 303, headers={"Cache-Control": "no-store"})

    async def _admin_form(self, request: Request) -> tuple[AccountSession, dict[str, str]] | Response:
        checked = await self.signed_in.checked_form(request)
        if isinstance(checked, Response):
            return checked
        if checked[0].subject not in self.admins:
            return _not_admin(checked[0])
        return checked

    # --- the API ---------------------------------------------------------------------------------------------
    async def _api_admin(self, request: Request) -> AccountSession | Response:
        session = await self.signed_in.session(request)
        if session is None:
            return _api_error(401, "not_signed_in", f"sign in at {PATH} first; the API uses that session")
        if session.subject not in self.admins:
            return _api_error(403, "forbidden", "this subject is not in admin.subjects")
        if request.method == "DELETE" and (
            not forms.from_this_site(request) or not session.csrf_matches(request.headers.get("x-csrf-token"))
        ):
            return _api_error(403, "csrf", f"send the X-CSRF-Token header that GET {API}/session gives")
        return session

    async def api_session(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        return _json({"subject": session.subject, "csrf_token": session.csrf})

    async def api_clients(self, request: Request) -> Response:
        session = await self._api_admin(request)
        return session if isinstance(session, Response) else _json({"clients": await self.administration.clients()})

    async def api_client(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        client_id = request.path_params["client_id"]
        if request.method == "DELETE":
            ended = await self.administration.delete_client(client_id, self.by(session))
            if ended is None:
                return _api_error(404, "not_found", "no such client")
            return _json({"deleted": client_id, "grants_revoked": ended})
        found = await self.administration.client(client_id)
        return _json(found) if found is not None else _api_error(404, "not_found", "no such client")

    async def api_client_grants(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        client_id = request.path_params["client_id"]
        ended = await self.administration.revoke_client(client_id, self.by(session))
        if ended is None:
            return _api_error(404, "not_found", "no such client")
        return _json({"client_id": client_id, "grants_revoked": ended})

    async def api_grants(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        user, client = request.query_params.get("user"), request.query_params.get("client")
        return _json({"grants": await self.administration.grant_list(subject=user, client_id=client)})

    async def api_grant(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        grant_id = request.path_params["grant_id"]
        if request.method == "DELETE":
            if not await self.administration.revoke_grant(grant_id, self.by(session)):
                return _api_error(404, "not_found", "no such grant")
            return _json({"revoked": grant_id})
        found = await self.administration.grant(grant_id)
        return _json(found) if found is not None else _api_error(404, "not_found", "no such grant")

    async def api_audit(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        query = request.query_params
        raw = query.get("limit", str(EVENTS_SHOWN))
        if not raw.isdigit() or not 0 < int(raw) <= MAX_EVENTS:
            return _api_error(400, "invalid_request", f"limit is a number from 1 to {MAX_EVENTS}")
        bounds = []
        for name in ("since", "until"):
            value = query.get(name)
            try:
                bounds.append(float(value) if value is not None else None)
            except ValueError:
                return _api_error(400, "invalid_request", f"{name} is a time in Unix seconds")
        search = Search(query.get("type"), query.get("subject"), query.get("client"), query.get("grant"), *bounds)
        return _json({"events": await recent(self.administration.store, int(raw), search)})

    async def api_connections(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        user = request.query_params.get("user")
        return _json({"connections": await self.administration.connected_accounts(user)})

    async def api_disconnect(self, request: Request) -> Response:
        session = await self._api_admin(request)
        if isinstance(session, Response):
            return session
        subject, connection = request.path_params["subject"], request.path_params["connection"]
        revoked = await self.administration.disconnect(subject, connection, self.by(session))
        if revoked is None:
            return _api_error(404, "not_found", "no such connected account")
        return _json({"subject": subject, "connection": connection, "revoked_at_provider": revoked})


def _not_admin(session: AccountSession) -> Response:
    return render(
        "message.html",
        403,
        title="Not an administrator",
        lines=[f"{session.subject} is not an administrator of this server."],
        note="An administrator adds subjects to admin.subjects in the settings.",
    )


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


def _api_error(status: int, error: str, description: str) -> Response:
    return _json({"error": error, "error_description": description}, status)
