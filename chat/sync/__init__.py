"""Two-way sync for mobile clients: push (client -> server) and pull (server -> client).

The wire format is the mobile client's (seed 000, camelCase kept) plus the token fields
(API.md "Sync for mobile clients"). `schema` is the push body, whose models validate and document
it; `push` applies one, all or nothing and idempotent; `pull` pages the user's changes by the
per-user sync clock (chat.sync_clock), and `cursor` spells where a client is, so it never misses one.
"""
