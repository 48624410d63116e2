"""Encoders, fusions and the multimodal network: declared shapes and exact per-modality splits."""

import pytest
import torch

from models import ENCODERS, FUSIONS, MultimodalNet

SPECS = [("v", "vector", (12,)), ("i", "image", (1, 16, 15)), ("s", "sequence", (8, 20))]


def _batch(specs, n=5):
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn(n, *shape, generator=g) for name, _, shape in specs}


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("n_mod", [2, 3])
def test_fusion_output_shapes_and_split(fusion, n_mod):
    cls = FUSIONS[fusion][0]
    if n_mod > cls.max_modalities:
        pytest.skip(f"{fusion} takes {cls.max_modalities} modalities")
    specs = SPECS[:n_mod]
    net = MultimodalNet(specs, 7, fusion=fusion, feature_dim=16, hidden_dim=32)
    out = net(_batch(specs))
    assert out.logits.shape == (5, 7)
    assert all(out.features[m].shape == (5, 16) for m, _, _ in specs)
    if cls.has_unimodal:
        total = sum(out.unimodal_logits.values())
        assert torch.allclose(total, out.logits, atol=1e-5)
        assert net.has_unimodal_logits
    else:
        assert all(v is None for v in out.unimodal_logits.values())


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_every_encoder_gives_declared_feature_size(name):
    kinds = ENCODERS[name][1]
    for _, kind, shape in SPECS:
        if kind in kinds:
            enc = ENCODERS[name][0](shape, 24, 32)
            out = enc(torch.randn(3, *shape))
            assert out.shape == (3, enc.out_dim)


def test_parameter_groups_are_disjoint_and_cover_the_model():
    net = MultimodalNet(SPECS[:2], 4)
    ids = [id(p) for m in net.modalities for p in net.encoder_parameters(m)] + [id(p) for p in net.head_parameters()]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))


def test_the_catalog_names_exactly_the_implemented_encoders_and_fusions():
    from models.catalog import ENCODER_NAMES, FUSION_NAMES

    assert list(ENCODERS) == list(ENCODER_NAMES) and list(FUSIONS) == list(FUSION_NAMES)
