"""A maker's extension policy: admins set it; admins and the maker read it."""

from __future__ import annotations

from fastapi import APIRouter

from payment_window.api.auth import CurrentActor
from payment_window.api.deps import MakerId, Windows
from payment_window.api.schemas import PolicyBody, error_responses

router = APIRouter(tags=["policy"])


@router.put(
    "/makers/{makerId}/policy",
    response_model=PolicyBody,
    responses=error_responses(401, 403, 422),
)
async def put_policy(
    maker_id: MakerId, body: PolicyBody, actor: CurrentActor, windows: Windows
) -> PolicyBody:
    """Replace the maker's policy (admin only)."""
    await windows.set_policy(maker_id, body.to_policy(), actor)
    return body


@router.get(
    "/makers/{makerId}/policy",
    response_model=PolicyBody,
    responses=error_responses(401, 403, 422),
)
async def get_policy(maker_id: MakerId, actor: CurrentActor, windows: Windows) -> PolicyBody:
    """The maker's policy, or the configured defaults when none was set (admin or the maker)."""
    return PolicyBody.of(await windows.policy_for(maker_id, actor))
