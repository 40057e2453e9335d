"""CLI sub-command modules; ``riad_agent.cli`` registers them on the ``riad`` app."""
