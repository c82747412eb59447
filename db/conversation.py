"""Conversation tables (sessions, messages, reviews) — added by the counselor and API work."""
