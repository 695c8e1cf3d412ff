"""Community detection with the map equation (InfoMap), kexue.fm/archives/7006."""

from kexue.graph.flow import Flow, network_flow
from kexue.graph.infomap import InfomapResult, infomap
from kexue.graph.map_equation import map_equation, plogp

__all__ = ["Flow", "InfomapResult", "infomap", "map_equation", "network_flow", "plogp"]
