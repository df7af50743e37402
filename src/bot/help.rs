//! `/help`: the commands, as a responder woken at 3 a.m. needs them.

pub const TEXT: &str = "tocsin — pages for unapproved changes on the official accounts.
Buttons on a page: Ack, Approve (it was us), Take down (posts), Resolve; on email pages, Pause mailer, and Release/Discard when messages are held at the MTA.
/ack N — acknowledge incident N
/approve N — it was us: approve what incident N found (bulk mail: up to twice its volume for 24h; /approve N cap=50000 window=7d to say otherwise)
/takedown N — delete incident N's post(s) on the platform
/resolve N [contained|false-alarm] — close incident N
/incidents — open incidents
/status — sources, last poll, page queue, mutes
/mute ACCOUNT DURATION — hold ACCOUNT's pages (e.g. 30m, 2h; at most 7d)
/unmute ACCOUNT — page ACCOUNT again now
/pause_mailer N — pause the mailer for email incident N (the mail kill switch)
/release N — deliver the messages held at the MTA for incident N (quorum as for approve)
/discard N — delete the messages held at the MTA for incident N
/help — this text";
