import torch

from kexue.experiments._shared.threads import torch_threads


def test_torch_threads_sets_and_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    try:
        with torch_threads(1):
            raise RuntimeError
    except RuntimeError:
        pass
    assert torch.get_num_threads() == before
