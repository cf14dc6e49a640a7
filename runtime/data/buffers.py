"""Batch memory that is reused instead of allocated afresh for every batch.

Two places allocate a batch-sized block per batch, and on the CPU a fresh block is dear:

* A DataLoader worker hands each batch to the main process in shared memory.  Done as torch
  does it, every large tensor gets a new shared-memory file: create and size it, map it, fault
  its pages in (the kernel zeroes each), pass its descriptor over a socket, map it and fault
  again in the main process, unmap on both sides.  For 16 images (3 MB of uint8 pixels) that
  is about 2 ms per batch on a 2-core VM, a tenth of the work of decoding and resizing them.
  Here each worker keeps a few shared *slots* and writes its batches into them.  A slot's
  descriptor crosses once, with the first batch written into it; later batches name it by
  (worker pid, slot number).  A state byte after the slot's data says who holds it: the worker
  sets it when it writes a batch into the slot, the main process clears it once nothing there
  refers to the slot any more (its storage's use count is back to the registry's own).  Each
  side writes one transition only, so no lock is needed.

* `Batch.to("cpu")` normalizes uint8 pixels into a new float batch (12.6 MB for 16 images at
  256x256).  glibc gives a block that size fresh zeroed pages whenever the heap around it has
  moved, a page fault per 4 KiB; `Recycler` keeps the last few outputs and hands one back once
  nothing refers to it.

"Nothing refers to it" is the storage's use count, which counts every tensor and view of the
storage, autograd's saved tensors included: a block the model still needs for its backward
pass is never handed out again.  Where torch lacks the count (`_storage_Use_Count` is internal)
or the platform is not Linux, both fall back to plain allocation.
"""
from __future__ import annotations

import math
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef

_use_count = getattr(torch._C, "_storage_Use_Count", None)
ENABLED = _use_count is not None and sys.platform.startswith("linux")

_HEADER = 64  # bytes after a slot's data; byte 0 is the state: 0 free, 1 held by the main process
_ALIGN = 1 << 12
SLOTS_PER_WORKER = 16  # beyond this a worker falls back to one-off shared memory


def _refs(ref: StorageWeakRef) -> int:
    return _use_count(ref.cdata)


def _view(storage: torch.UntypedStorage, dtype: torch.dtype, shape, stride=(), offset: int = 0) -> torch.Tensor:
    """A tensor over `storage` (offset in elements; no stride: contiguous)."""
    return torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)


def _one_off(shape, dtype: torch.dtype) -> torch.Tensor:
    """A tensor in a shared-memory block of its own, as torch would allocate it."""
    return _view(torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize), dtype, shape)


# ---------------------------------------------------------------- worker side


@dataclass
class _Slot:
    index: int
    storage: torch.UntypedStorage
    capacity: int  # data bytes
    state: np.ndarray  # the state byte, a view into shared memory
    sent: bool = False  # has the main process received the descriptor?


class _WorkerSlots:
    def __init__(self):
        self.slots: list[_Slot] = []
        self.by_address: dict[int, _Slot] = {}

    def take(self, shape, dtype: torch.dtype) -> torch.Tensor:
        nbytes = math.prod(shape) * dtype.itemsize
        free = [s for s in self.slots if s.capacity >= nbytes and s.state[0] == 0]
        if free:
            slot = min(free, key=lambda s: s.capacity)
        elif len(self.slots) < SLOTS_PER_WORKER:
            # headroom: variable-length batches (audio frames, captions) then fit the same slot
            capacity = -(-(nbytes + nbytes // 4) // _ALIGN) * _ALIGN
            storage = torch.UntypedStorage._new_shared(capacity + _HEADER)
            state = _view(storage, torch.uint8, (_HEADER,), offset=capacity).numpy()
            state[0] = 0
            slot = _Slot(len(self.slots), storage, capacity, state)
            self.slots.append(slot)
            self.by_address[storage.data_ptr()] = slot
        else:  # every slot is with the main process
            return _one_off(shape, dtype)
        slot.state[0] = 1
        return _view(slot.storage, dtype, shape)

    def reference(self, t: torch.Tensor):
        slot = self.by_address.get(t.untyped_storage().data_ptr())
        if slot is None:
            return None
        ref = SlotRef(os.getpid(), slot.index, None if slot.sent else slot.storage, t.dtype, tuple(t.shape),
                      t.stride(), t.storage_offset())
        slot.sent = True
        return ref


_worker_slots: _WorkerSlots | None = None


def worker_empty(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized tensor in shared memory, for a batch a DataLoader worker hands over."""
    global _worker_slots
    if not ENABLED:
        return _one_off(shape, dtype)
    if _worker_slots is None:
        _worker_slots = _WorkerSlots()
    return _worker_slots.take(shape, dtype)


def slot_reference(t: torch.Tensor) -> "SlotRef | None":
    """For pickling in a worker: a SlotRef if `t` lives in one of this worker's slots."""
    return None if _worker_slots is None else _worker_slots.reference(t)


# ---------------------------------------------------------------- main side


@dataclass
class SlotRef:
    """A tensor in a worker's slot, as pickled: the slot's storage travels with the first use."""

    pid: int
    index: int
    storage: torch.UntypedStorage | None
    dtype: torch.dtype
    shape: tuple
    stride: tuple
    offset: int

    def tensor(self) -> torch.Tensor:
        return _registry.view(self)


@dataclass
class _Mapped:
    storage: torch.UntypedStorage
    ref: StorageWeakRef
    state: np.ndarray
    idle: int = 0  # the storage's use count when only the registry holds it
    lent: bool = False  # a view was handed out since the slot was last released


class _Registry:
    """The main process's map of the workers' slots."""

    def __init__(self):
        self.slots: dict[tuple[int, int], _Mapped] = {}
        self.lock = threading.Lock()  # received in the main thread or the pin-memory thread

    def view(self, ref: SlotRef) -> torch.Tensor:
        with self.lock:
            key = (ref.pid, ref.index)
            if ref.storage is not None:
                if all(pid != ref.pid for pid, _ in self.slots):
                    self._forget_exited(ref.pid)
                capacity = ref.storage.nbytes() - _HEADER
                state = _view(ref.storage, torch.uint8, (_HEADER,), offset=capacity).numpy()
                mapped = _Mapped(ref.storage, StorageWeakRef(ref.storage), state)
                mapped.idle = _refs(mapped.ref)
                self.slots[key] = mapped
            mapped = self.slots.get(key)
            if mapped is None:  # the slot's first batch carried its descriptor: it cannot be missing
                raise RuntimeError(f"a DataLoader worker (pid {ref.pid}) named shared slot {ref.index}, which this "
                                   "process never received; the batch hand-off lost a message")
            mapped.lent = True
            return _view(mapped.storage, ref.dtype, ref.shape, ref.stride, ref.offset)

    def release_idle(self) -> None:
        """Give back to their workers the slots nothing in this process refers to any more.
        Only slots lent since their last release: a slot a worker has just filled but whose
        batch is still in the pipe is not lent yet, however idle it looks."""
        with self.lock:
            for mapped in self.slots.values():
                if mapped.lent and _refs(mapped.ref) == mapped.idle:
                    mapped.lent = False
                    mapped.state[0] = 0

    def _forget_exited(self, new_pid: int) -> None:
        """A new worker: drop the slots of workers that have exited (views still in use keep
        their memory alive by themselves)."""
        for pid in {pid for pid, _ in self.slots}:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                for key in [k for k in self.slots if k[0] == pid]:
                    del self.slots[key]
            except PermissionError:
                pass


_registry = _Registry()


def release_idle() -> None:
    if ENABLED:
        _registry.release_idle()


class Recycler:
    """Output blocks of one shape and dtype, reused once nothing refers to them."""

    def __init__(self, keep: int = 3):
        self.keep = keep
        self.blocks: list[tuple[torch.Tensor, StorageWeakRef, int]] = []
        self.lock = threading.Lock()

    def empty(self, shape, dtype: torch.dtype) -> torch.Tensor:
        if not ENABLED:
            return torch.empty(shape, dtype=dtype)
        shape = tuple(shape)
        with self.lock:
            for block, ref, idle in self.blocks:
                if tuple(block.shape) == shape and block.dtype == dtype and _refs(ref) == idle:
                    return block.view(shape)  # a new tensor object: the block's own is never lent
            block = torch.empty(shape, dtype=dtype)
            if len(self.blocks) == self.keep:
                self.blocks.pop(0)
            ref = StorageWeakRef(block.untyped_storage())
            self.blocks.append((block, ref, _refs(ref)))
            return block.view(shape)

