"""Caps on the work a message can cause, each checked before work grows with the input.

`consultant.parse` and the modules beside it read them; a message past one is cut at the
cap (text, parts, depth) or refused (size, header block), never parsed without bound.
"""

MAX_MESSAGE_BYTES = 30 * 1024 * 1024
MAX_HEADER_BYTES = 128 * 1024
MAX_HEADER_FIELDS = 500
MAX_MIME_DEPTH = 20
MAX_MIME_PARTS = 500
MAX_PART_BYTES = 2 * 1024 * 1024
MAX_HTML_CHARS = 200_000
MAX_SCAN_CHARS = 100_000
MAX_BODY_CHARS = 20_000
MAX_SUBJECT_CHARS = 1_000
MAX_NAME_CHARS = 255
MAX_ATTACHMENTS = 100
MAX_REFERENCES = 100
MAX_PARAM_CHARS = 4096
MAX_PARAMS = 64
MAX_FORWARDS = 10
