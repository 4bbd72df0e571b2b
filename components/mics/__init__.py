"""MICS: a multi-tenant, zero-storage instant-messaging pipe running inside a Crossbar router."""

__version__ = "0.1.0"
