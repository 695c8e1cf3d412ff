"""The 34 techniques of TECHNIQUES.md, where each lives, and its status.

A technique is *implemented* when every public name listed for it imports; the
README table (``kexue readme``) is generated from this list, the experiment
registry and the newest report, never edited by hand.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Technique:
    id: str
    name: str
    posts: tuple[int, ...]
    api: tuple[str, ...]  # dotted public names

    def implemented(self) -> bool:
        if not self.api:
            return False
        for dotted in self.api:
            module, _, attr = dotted.rpartition(".")
            try:
                if not hasattr(importlib.import_module(module), attr):
                    return False
            except ImportError:
                return False
        return True


T = Technique
TECHNIQUES: tuple[Technique, ...] = (
    T("T1", "RNN gradient vanishing / exploding analysis", (7888,), ("kexue.explain.rnn_gradient_flow", "kexue.nn.make_cell")),
    T("T2", "WEISSI weight-scale-shift-invariant regulariser", (7681,), ("kexue.train.weissi_penalty",)),
    T("T3", "Flooding", (7643,), ("kexue.losses.flooding",)),
    T("T4", "Random noise, gradient penalty and VAT", (7466,), ("kexue.train.VAT",)),
    T("T5", "Recompute (gradient checkpointing)", (7367,), ("kexue.nn.TransformerBlock",)),
    T("T6", "key_size and Talking-Heads attention", (7325,), ("kexue.nn.MultiHeadAttention",)),
    T("T7", "FGM adversarial training and gradient penalty", (7234,), ("kexue.train.FGM", "kexue.train.gradient_penalty")),
    T("T8", "ON-LSTM and unsupervised parsing", (6621,), ("kexue.nn.ONLSTM", "kexue.nn.distance_to_tree")),
    T("T9", "HSIC", (6910,), ("kexue.explain.hsic", "kexue.explain.hsic_test")),
    T("T10", "Attention masks: LM, UniLM, permutation", (6933,), ("kexue.nn.unilm_mask", "kexue.nn.permutation_mask")),
    T("T11", "GPT-2 / CPM-LM and its tokenizer", (7912,), ("kexue.models.GPT2",)),
    T("T12", "BERT-whitening", (8069, 8321), ("kexue.embed.Whitening",)),
    T("T13", "Ladder Side-Tuning", (9138,), ("kexue.train.LadderSideNetwork", "kexue.train.ladder_parameter_count")),
    T("T14", "Length extrapolation (NTK, YaRN, ReRoPE, ...)", (9948, 9708), ("kexue.nn.RoPE", "kexue.nn.apply_rope")),
    T("T15", "GAN dynamics (Dirac GAN)", (6583,), ("kexue.generative.DiracGAN",)),
    T("T16", "InfoMap / map equation", (7006,), ("kexue.graph.map_equation", "kexue.graph.infomap")),
    T("T17", "Shape of a spinning jump rope", (6784,), ("kexue.physics.jump_rope",)),
    T("T18", "Integrated gradients", (7533,), ("kexue.explain.integrated_gradients", "kexue.explain.layer_integrated_gradients")),
    T("T19", "BERT-of-Theseus", (7575,), ("kexue.train.Theseus", "kexue.train.LinearReplacement")),
    T("T20", "MCMC / simulated-annealing constrained generation", (8062, 8084, 8119, 8194),
      ("kexue.generate.CGMH", "kexue.generate.mcmc.annealing_schedule")),
    T("T21", "Multi-task loss weighting", (8870,), ("kexue.losses.MultiTaskLoss",)),
    T("T22", "Imbalance losses: focal, truncation, smooth F1, multilabel CE", (7708, 4733, 7359),
      ("kexue.losses.focal_loss", "kexue.losses.multilabel_categorical_crossentropy")),
    T("T23", "Word-vector dimension n > 8.33 log N", (7695,), ("kexue.embed.min_embedding_dim",)),
    T("T24", "T-TA: all-token MLM in one pass", (7661,), ("kexue.models.TTA",)),
    T("T25", "UniLM question-answer generation", (7630,), ("kexue.generate.UniLM", "kexue.generate.generate")),
    T("T26", "Logit adjustment", (7615,), ("kexue.losses.LogitAdjustedLoss", "kexue.losses.posthoc_logit_adjust")),
    T("T27", "Non-square initialisation averaging", (8725,), ("kexue.nn.init.fan_average_normal_",)),
    T("T28", "Gradient-normalised discriminator", (8757,), ("kexue.generative.GradientNormalized",)),
    T("T29", "VAE importance-sampled likelihood", (8791,), ("kexue.generative.VAE",)),
    T("T30", "Input vs parameter gradient-penalty inequality", (8796,), ("kexue.explain.gradient_penalty_inequality",)),
    T("T31", "Seq2Seq + prefix-tree constrained decoding", (8802,), ("kexue.generate.Trie", "kexue.generate.Lookahead")),
    T("T32", "Entropy-invariant attention scale", (8823,), ("kexue.nn.MultiHeadAttention",)),
    T("T33", "CoSENT", (8847,), ("kexue.losses.cosent_loss",)),
    T("T34", "Entropy normalisation", (8829,), ("kexue.nn.functional.entropy_normalize",)),
)
del T


def by_id(technique_id: str) -> Technique:
    for t in TECHNIQUES:
        if t.id == technique_id.upper():
            return t
    raise KeyError(technique_id)
