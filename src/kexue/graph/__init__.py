"""Community detection with the map equation (InfoMap), kexue.fm/archives/7006.

:func:`network_flow` turns a graph into visit rates and link flows, :func:`map_equation`
gives a partition's codelength, :func:`infomap` searches for the shortest one, and
:func:`knn_graph` links vectors to their nearest neighbours (the post's word clusters), and
:func:`lfr_graph` makes benchmark graphs with planted communities.
"""

from kexue.graph.flow import Flow, network_flow
from kexue.graph.infomap import InfomapResult, infomap
from kexue.graph.knn import knn_graph
from kexue.graph.lfr import LFR_PARAMETERS, lfr_graph
from kexue.graph.map_equation import map_equation, plogp

__all__ = [
    "LFR_PARAMETERS",
    "Flow",
    "InfomapResult",
    "infomap",
    "knn_graph",
    "lfr_graph",
    "map_equation",
    "network_flow",
    "plogp",
]
