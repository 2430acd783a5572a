"""Who a page's visitor is, on a multi-user server: a random key the browser keeps (so a refreshed page, or
another tab of the same browser, is the same visitor), of which the server knows only a digest, the owner id its
runs record. A key is unguessable, so no one can act as another visitor; a session whose page never said who it
is (an API client) is a visitor of its own (see AppContext.access)."""

import hashlib
import secrets

import gradio as gr

from lift_ui.context import AppContext

VISITOR_KEY = "lift-studio-visitor"
KEY_BYTES = 24


def owner_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def build(ctx: AppContext) -> None:
    """The page's visitor, said once the page opens: `ctx.visitor_known` fires then, for what lists runs."""
    kept = gr.BrowserState(None, storage_key=VISITOR_KEY)
    known = gr.State(None)  # this session's owner id, once known

    def identify(key, request: gr.Request):
        if not ctx.multi_user:
            return key, "single user"
        if not (isinstance(key, str) and len(key) == 2 * KEY_BYTES):
            key = secrets.token_hex(KEY_BYTES)
        ctx.visitors[request.session_hash] = owner = owner_id(key)
        return key, owner

    gr.on(None, identify, kept, [kept, known], api_visibility="private", show_progress="hidden")
    ctx.visitor_known = known.change
