"""ChatMember objects in the Bot API's shapes, one per status."""

from typing import Any

from botter.sandbox.world import (
    ADMIN_RIGHTS,
    CHANNEL_ADMIN_RIGHTS,
    GROUP_ADMIN_RIGHTS,
    Chat,
    Membership,
    User,
)

RESTRICTED_PERMISSIONS = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)


def full_rights(chat: Chat) -> dict[str, bool]:
    extra = CHANNEL_ADMIN_RIGHTS if chat.type == "channel" else GROUP_ADMIN_RIGHTS
    return dict.fromkeys((*ADMIN_RIGHTS, *extra), True)


def chat_member_api(
    chat: Chat, user: User, membership: Membership | None, at: int
) -> dict[str, Any]:
    status = membership.effective_status(at) if membership else "left"
    base: dict[str, Any] = {"status": status, "user": user.to_api()}
    if status == "creator":
        return {**base, "is_anonymous": False}
    if status == "administrator":
        assert membership is not None
        rights = dict.fromkeys(full_rights(chat), False) | membership.rights
        return {**base, "can_be_edited": False, "is_anonymous": False, **rights}
    if status == "kicked":
        assert membership is not None
        return {**base, "until_date": membership.until_date}
    if status == "restricted":
        assert membership is not None
        permissions = dict.fromkeys(RESTRICTED_PERMISSIONS, False)
        return {**base, "is_member": True, **permissions, "until_date": membership.until_date}
    return base
