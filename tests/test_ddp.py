"""DistributedDataParallel on CPU: two Gloo processes run the library's own ``train``."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from mrtl_core.data import UnetSample
from mrtl_core.train import TrainConfig, train
from mrtl_core.unet import Unet


class TinySet(Dataset):
    """Samples like SliceDataset's (UnetSample, no k-space): a blurred, noisy copy of a random smooth target."""

    def __init__(self, n: int, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        base = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
        self.target = (base - base.mean()) / base.std()
        self.image = self.target + 0.5 * torch.randn(n, 1, size, size, generator=g)

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> UnetSample:
        return UnetSample(image=self.image[i], target=self.target[i], mean=torch.tensor(0.0), std=torch.tensor(1.0),
                          max_value=torch.tensor(6.0), fname="tiny", slice_idx=i, subject="s")


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        model = Unet(chans=4, num_pool_layers=2)
        config = TrainConfig(epochs=2, batch_size=2, lr=1e-3, seed=0, progress=False, device="cpu")
        ckpt = os.path.join(out_dir, "ddp.pt")
        result = train(model, TinySet(8), TinySet(2, seed=1), config, checkpoint_path=ckpt)
        torch.save({"state": model.state_dict(), "steps": result.steps, "val": result.val_loss},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with Gloo is not available")
def test_two_cpu_ranks_train_identically(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    # 8 slices, 2 ranks, batch 2 per rank: 2 steps per epoch, 2 epochs
    assert r0["steps"] == r1["steps"] == 4
    assert r0["val"] == r1["val"]  # every rank validates on the full set: same early-stopping decisions
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    # the weights moved from rank 0's initialisation, and rank 0 wrote the checkpoint
    torch.manual_seed(0)
    init = Unet(chans=4, num_pool_layers=2).state_dict()
    assert any(not torch.equal(init[k], v) for k, v in r0["state"].items())
    assert (tmp_path / "ddp.pt").is_file()
