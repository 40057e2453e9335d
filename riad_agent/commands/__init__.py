"""The ``riad`` sub-commands, one module per command or group; ``riad_agent.cli`` registers them.

``inspection`` (``riad inspect`` and the report printing ``demo`` shares), ``demo``, ``triage``,
``kb``, ``eval_*``, ``bench*``, ``serve_*``; ``terminal`` holds what they share on the terminal
(consoles, spinner, one-line typed errors).
"""
