"""HTTP handlers of the voice-message resource."""

from __future__ import annotations

from service.domain.voice_requests import RESOURCE, parse_voice_request
from service.http.message_routes import (
    cancel_handler,
    create_handler,
    get_handler,
    list_handler,
)
from service.store.message_kinds import VOICE

create_voice = create_handler(VOICE, RESOURCE, parse_voice_request)
get_voice = get_handler(VOICE)
list_voice = list_handler(VOICE, RESOURCE)
cancel_voice = cancel_handler(VOICE)
