"""TripoSG DiT with ``use_cross_attention_2``: the same checks, with the case's second context."""

from .check_triposg_dit import check  # noqa: F401
