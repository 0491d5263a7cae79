"""Accounts over HTTP: `GET /api/whoami-v2`."""

from __future__ import annotations

from fastapi import APIRouter

from .common import require_user
from .deps import CallerDep

router = APIRouter(prefix="/api")


@router.get("/whoami-v2")
def whoami(p: CallerDep) -> dict:
    require_user(p)
    user = p.user
    return {
        "type": "user",
        "id": str(user.id),
        "name": user.name,
        "fullname": user.fullname or user.name,
        "email": user.email or None,
        "isPro": False,
        "canPay": False,
        "avatarUrl": "",
        "isAdmin": bool(user.is_admin),
        "orgs": [
            {"type": "org", "name": name, "fullname": name, "roleInOrg": role, "id": name}
            for name, role in sorted(p.orgs.items())
        ],
        "auth": {"type": "access_token", "accessToken": {"displayName": p.token_name, "role": p.role}},
    }
