"""kexue: the techniques of the Scientific Spaces blog (kexue.fm) in PyTorch.

Subpackages (imports point from the outside in, see DESIGN.md):
``nn`` building blocks, ``models`` BERT / GPT-2, ``losses`` pure loss functions,
``train`` the training loop and step wrappers, ``embed`` sentence embeddings,
``explain`` diagnostics, ``data`` readers and tokenizers. The evidence suite lives
in ``experiments``, ``report`` and ``cli`` and is never imported by the library.
"""

__version__ = "0.1.0"
