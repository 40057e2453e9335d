"""The reasoner as a network service: wire format, FastAPI app, HTTP client and Ray Serve scale-out.

``riad serve reasoner`` hosts a :class:`~riad_agent.protocols.Reasoner` (usually on a GPU) behind
``POST /v1/reason``; :class:`~riad_agent.serving.client.HttpReasoner` is the matching client that
the inspection graph uses when ``RIAD_REASONER_URL`` is set.
"""
