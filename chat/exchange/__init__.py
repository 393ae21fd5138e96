"""One exchange with a model, behind all four doors (WebSocket, SSE, /send, OpenAI's /v1).

A message's text goes through these modules in this order, each once:

    body.py      `parse_send_body`: the send body's one schema (validates, and documents the OpenAPI
                 `SendMessage`); refusals are INVALID_MESSAGE naming the field.
    stream.py    `start_exchange(user, body)` runs the preparing on a database thread (`run_db`) and
                 returns an `Exchange` (or a `Replay`) whose `events()` streams API.md's events.
    relay.py     `Relay`: the provider's stream read in a task of its own, its connection held
                 between frames, so a frame carries all that arrived (and the silence limit).
    prepare.py   `prepare_exchange`: everything that can refuse the request before a stream starts
                 (conversation, idempotency, model, the budget hold, which may lower
                 `max_tokens` to what the budget has left), then the user message, a
                 `streaming` answer and a `pending` usage row in one transaction. A known
                 `client_message_id` turns into a `Replay` (replay.py) of the stored result.
    settle.py    `settle_exchange`: whatever ended the stream (success, provider error, cancel,
                 disconnect, CancelledError), the usage row, both messages, conversation totals,
                 budget and hold in ONE transaction, exactly once.
    events.py    every event dict, built in one place (prepare, stream and replay call it).
    recovery.py  `settle_interrupted_exchanges`: streams a restart cut off are settled `interrupted`.
    supplied.py  `Via`: the door and API token a usage row records (and whose own budget is held);
                 `Supplied`: the OpenAI door's client-sent history and system prompt, asked instead
                 of the stored thread (chat/openai_door.py).
    versions.py  `regenerate` and `edit_of` sends: what they replace (checked in prepare), the live
                 thread they leave (`superseded_at`), a regeneration's replay; settle adds a
                 regeneration's prompt to its question's.

Hot-path statements. An exchange writes about a dozen rows. Three UPDATEs whose F() expressions
are costly to compile are literal SQL (`settle.ADD_TO_CONVERSATION`, `prepare.STAMP_CONVERSATION`,
`usage.budgets.COUNT_SETTLED`), and so is the history read (`prepare.HISTORY`). The single-table
reads and single-row updates go through `chatlima.rows` (`first_where`, `select_where`,
`update_where`: the field names and values a queryset would take, the SQL built once per shape).
The INSERTs go through `chatlima.rows.insert_row` (what `create()` stores, without building an
instance first or compiling the INSERT). The two UPDATEs that return their row use
`chatlima.rows.update_returning`, and the conversation is read with whether it has attachments
(`chat.attachments.live_conversation`, one statement). Client CPU per statement on PostgreSQL (2,000 calls each;
"by hand" is a statement built without the ORM):

    statement                                ORM      by hand
    conversation totals (6 F() + 3 sets)     1.1 ms   0.3 ms    literal
    budget settle (4 F())                    0.9 ms   0.2 ms    literal
    prepare's conversation (1 F() + 6 sets)  0.7 ms   0.25 ms   literal
    usage row compare-and-set (14 sets)      0.65 ms  0.2 ms    chatlima.rows
    answer, user message (3 to 12 sets)      0.4 ms   0.13 ms   chatlima.rows
    conversation read (25 columns)           0.8 ms   0.16 ms   chatlima.rows
    an INSERT (a message)                    0.37 ms  0.25 ms   chatlima.rows

bench/prepare_settle.py runs prepare + settle alone (one thread, 10 sends per conversation):
12.4-14.7 ms of CPU per exchange with every read and single-row update through the ORM, 8.3-9.7 ms
with this mix, and 7.3-9.4 -> 6.7-7.2 ms (interleaved) once the INSERTs went through insert_row
too. bench/ws_load.py's split (one daphne process, warm): 12.9-13.8 -> 7.8-9.1 ms.
"""

from chat.exchange.body import SendBody, parse_send_body
from chat.exchange.prepare import Prepared, build_context, prepare_exchange
from chat.exchange.recovery import has_fresh_pending, settle_interrupted_exchanges, stale_before
from chat.exchange.replay import Replay
from chat.exchange.settle import Outcome, Settled, SettleTarget, charged_usage, settle_exchange
from chat.exchange.stream import SETTLE_ATTEMPTS, Exchange, prepared_exchange, start_exchange

__all__ = [
    "SETTLE_ATTEMPTS", "Exchange", "Outcome", "Prepared", "Replay", "SendBody", "SettleTarget", "Settled",
    "build_context", "charged_usage", "has_fresh_pending", "parse_send_body", "prepare_exchange", "prepared_exchange",
    "settle_exchange", "settle_interrupted_exchanges", "stale_before", "start_exchange",
]
