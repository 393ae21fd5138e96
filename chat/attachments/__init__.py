"""Files and URLs as a conversation's context (API.md "Attachments").

    models.py   `Attachment`: one file or URL, its text extracted once, stored once, counted once.
    extract.py  `extract(name, data)`: the text of a file by its kind (text, Markdown, code, CSV,
                JSON; PDF with pypdf); anything unreadable is refused before anything is stored.
    fetch.py    `fetch_url(url)`: the SSRF-safe fetcher (http/https only, every address checked,
                the checked address connected to, redirects followed by hand, timeout, size cap),
                HTML made readable by trafilatura.
    store.py    `add_file`, `add_url`, `refetch`, `remove`, `list_for`: the business rules and
                limits, each in one transaction under the owner's sync clock lock.
    context.py  `context_for(conversation, model)`: the text block every later message carries
                (appended to the system prompt, so every provider gets it as text) and its counts
                for the usage row's metadata.
"""

from chat.attachments.context import AttachmentContext, attachments_of, context_for, context_of, live_conversation

__all__ = ["AttachmentContext", "attachments_of", "context_for", "context_of", "live_conversation"]
