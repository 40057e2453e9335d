"""``riad bench``: the whole pipeline stage by stage, batch triage throughput and every speed goal.

The modules are imported where used (``riad_agent.bench.runner``, ``.latent``, ...): the latent
benchmark's fresh memory-measuring processes import only what they measure.
"""
