"""Who may be in which chat, until when: grants, invite links, enforcement, reminders."""
