"""The backbone behind one facade: loading the parts a method needs, stage-0 and stage-I sampling
(``sampling``), decoder queries and captured attention. Models themselves live in ``engine.models``."""

from .facade import Backbone, FrameDecoder, load_backbone, query_bucket

__all__ = ["Backbone", "FrameDecoder", "load_backbone", "query_bucket"]
