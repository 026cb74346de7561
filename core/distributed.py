"""Multi-process training with PyTorch's own engine (torch.distributed + DDP).

Launch with ``torchrun --nproc_per_node N train_student.py ...`` (CPU processes use gloo, GPU
processes NCCL), or with SimKD's flags ``--multiprocessing-distributed --dist-url URL
--gpu_id 0,1,2,3``, which spawn one process per listed GPU. ``--batch_size`` is per process.
Rank 0 alone prints, shows progress bars and writes checkpoints and logs.
"""
import os
import sys
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from .stop import STOP
from .util import UserError


def rank_and_world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main():
    return rank_and_world()[0] == 0


def setup():
    """Join the process group when launched with several processes; return this process's
    device. Only the main process's messages are shown (``core.log``)."""
    if int(os.environ.get('WORLD_SIZE', '1')) > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dist.init_process_group('nccl', device_id=torch.device('cuda', local_rank))
        else:
            dist.init_process_group('gloo')
    if torch.cuda.is_available():
        return torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
    return torch.device('cpu')


def cleanup():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if rank_and_world()[1] == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_(tensors):
    """Rank 0's values of ``tensors``, in place, on every rank."""
    if rank_and_world()[1] > 1:
        for tensor in tensors:
            dist.broadcast(tensor.data, src=0)


def all_reduce_sum(tensor):
    if rank_and_world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


def all_gather_rows(tensor):
    """Concatenate every rank's ``tensor`` along dim 0 (row counts may differ)."""
    world = rank_and_world()[1]
    if world == 1:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[:tensor.shape[0]] = tensor
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:int(c.item())] for g, c in zip(gathered, counts)])


def spawn(run, opt, launch):
    """SimKD's ``--multiprocessing-distributed``: ``run(opt)`` in one process per GPU of
    ``--gpu_id`` (or per visible GPU; on a machine without GPUs, one CPU process per listed
    id). ``launch``: a ``core.config.LaunchConfig``."""
    ids = launch.gpu_id.split(',') if launch.gpu_id else []
    count = torch.cuda.device_count() if torch.cuda.is_available() else len(ids)
    if count < 1:
        raise UserError('--multiprocessing-distributed needs GPUs (or --gpu_id listing how many '
                        'CPU processes to start); torchrun --nproc_per_node N also works')
    url = urlparse(launch.dist_url)
    if url.scheme != 'tcp' or not url.hostname or not url.port:
        raise UserError(f"--dist-url must look like tcp://127.0.0.1:23456, got "
                        f"'{launch.dist_url}'")
    env = dict(MASTER_ADDR=url.hostname, MASTER_PORT=str(url.port), WORLD_SIZE=str(count))
    try:
        mp.spawn(_worker, nprocs=count, args=(run, opt, env))
    except mp.ProcessExitedException as e:
        raise UserError(f'a training process failed (exit code {e.exit_code}); see its message '
                        f'above') from None


def _worker(local_rank, run, opt, env):
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    try:
        with STOP:
            run(opt)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
