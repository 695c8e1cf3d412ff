"""kexue: the techniques of the Scientific Spaces blog (kexue.fm) in PyTorch.

Library subpackages, imports pointing from the outside in: ``train``, ``embed``,
``generate``, ``explain``, ``generative``, ``graph``, ``physics`` use ``models``, which
uses ``nn``; ``losses`` and ``data`` are leaves any layer may use. The evidence suite
(``evidence`` the framework, ``experiments`` one module per post, ``cli``) sits on top
and is never imported by the library; ``tests/test_layering.py`` enforces this.
"""

__version__ = "0.1.0"
