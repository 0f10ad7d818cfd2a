"""Personalized Injection Self-Attention (PISA) and the ablation switches (docs/method.md, section 3).

The reference image rides along as the last latent frame. In every spatial self-attention layer
each generated frame attends over its own tokens concatenated with the reference's tokens; the
reference's output is the mean of what it gets in those 16 pairings. No new parameters.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch.autograd.function import once_differentiable

# Processor keys and parameter names of the spatial transformer blocks; motion modules live under
# `.motion_modules.` and never match.
_SPATIAL_ATTENTION = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.(attn1|attn2)\.")
_MOTION_HOOK = "videomaker_video_frames_only"


@dataclass(frozen=True)
class PISASwitches:
    """The ablation switches of the paper's Table 3; defaults are the final model.

    Args:
        ref_in_cross_attn: The reference frame attends to the text in `attn2`. When False, only the
            video frames go through cross-attention and the reference's `attn2` output is zero, so
            the block's residual passes it through unchanged.
        ref_in_motion: The reference takes part in temporal attention as the last frame. When
            False, motion modules run on the video frames only and return the reference unchanged.
        update_motion: Motion-module parameters are trained (see `select_trainable`).
    """

    ref_in_cross_attn: bool = True
    ref_in_motion: bool = True
    update_motion: bool = True


def _frames_view(tensor: torch.Tensor, num_frames: int, argument: str) -> torch.Tensor:
    """`(b f) ...` -> `b f ...`, refusing a batch that is not a whole number of videos."""
    if tensor.shape[0] % num_frames:
        raise ValueError(
            f"`{argument}` has {tensor.shape[0]} rows, not a multiple of num_frames={num_frames} "
            "(16 generated frames + 1 reference). Install the processors with the frame count the UNet gets."
        )
    return tensor.unflatten(0, (tensor.shape[0] // num_frames, num_frames))


def _check_self_attention(hidden_states: torch.Tensor, encoder_hidden_states: object, attention_mask: object) -> None:
    if encoder_hidden_states is not None or attention_mask is not None:
        raise ValueError(
            "PISA is for self-attention only; got "
            f"`encoder_hidden_states`={None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)}, "
            f"`attention_mask`={None if attention_mask is None else tuple(attention_mask.shape)}."
        )
    if hidden_states.ndim != 3:
        raise ValueError(f"`hidden_states` must be (batch*frames, tokens, channels), got {tuple(hidden_states.shape)}.")


# Fused attention kernels that return the log-sum-exp of each query row and whose backward takes it
# back: the merge needs both. Each takes and returns (batch, heads, tokens, head_dim) tensors; lse is
# float32 (batch, heads, tokens). `aux` carries what a kernel's backward needs from its forward.
@dataclass
class _Partial:
    out: torch.Tensor
    lse: torch.Tensor
    aux: tuple = ()


class _AttentionKernel:
    """Attention with its log-sum-exp; the fused kernels of one device."""

    name = "abstract"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> _Partial:
        raise NotImplementedError

    def backward(self, grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, part: _Partial, lse: torch.Tensor):
        """Gradients of one block given the *merged* output (`part.out`) and normaliser (`lse`), as flash attention's
        backward over one key block of a longer sequence."""
        raise NotImplementedError


class _CPUFlashKernel(_AttentionKernel):
    name = "cpu-flash"  # aten's flash attention for the CPU: float32/float64/bfloat16/float16

    def forward(self, q, k, v):
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, False)
        return _Partial(out, lse)

    def backward(self, grad, q, k, v, part, lse):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(grad, q, k, v, part.out, lse, 0.0, False)


class _CUDAFlashKernel(_AttentionKernel):
    name = "cuda-flash"  # FlashAttention-2 in aten: float16/bfloat16, head_dim a multiple of 8 up to 256

    def forward(self, q, k, v):
        out, lse, cum_q, cum_k, max_q, max_k, seed, offset, _ = torch.ops.aten._scaled_dot_product_flash_attention(
            q, k, v, 0.0, False, False
        )
        return _Partial(out, lse, (cum_q, cum_k, max_q, max_k, seed, offset))

    def backward(self, grad, q, k, v, part, lse):
        cum_q, cum_k, max_q, max_k, seed, offset = part.aux
        return torch.ops.aten._scaled_dot_product_flash_attention_backward(
            grad, q, k, v, part.out, lse.contiguous(), cum_q, cum_k, max_q, max_k, 0.0, False, seed, offset
        )


class _CUDAEfficientKernel(_AttentionKernel):
    name = "cuda-efficient"  # memory-efficient attention in aten: every float dtype, any head_dim

    def forward(self, q, k, v):
        out, lse, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, False)
        # lse comes padded to a multiple of 32 rows; the merge reads the real rows, backward wants the padding back.
        return _Partial(out, lse[..., : q.shape[2]], (seed, offset, lse.shape[-1]))

    def backward(self, grad, q, k, v, part, lse):
        seed, offset, padded = part.aux
        # +inf on the padding rows, as the forward writes them (their probabilities are then 0).
        lse = F.pad(lse, (0, padded - lse.shape[-1]), value=float("inf")).contiguous()
        # Its 16-bit backward reads `out` with the row stride of a (batch, rows, heads, d) layout.
        out = part.out.transpose(1, 2).contiguous().transpose(1, 2)
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            grad, q, k, v, None, out, lse, seed, offset, 0.0, [True, True, True, False], False
        )
        return dq, dk, dv


def _fused_kernel(q: torch.Tensor) -> _AttentionKernel | None:
    """The fused kernel for `q`'s device and dtype, or None for the explicit path."""
    if q.device.type == "cpu":
        return _CPUFlashKernel()
    if q.device.type == "cuda" and q.dtype != torch.float64:  # no fused CUDA kernel takes float64
        flash = (
            q.dtype in (torch.float16, torch.bfloat16)
            and q.shape[-1] % 8 == 0
            and q.shape[-1] <= 256
            and torch.backends.cuda.is_flash_attention_available()
            and torch.cuda.get_device_capability(q.device) >= (8, 0)  # FlashAttention-2 needs Ampere or newer
        )
        return _CUDAFlashKernel() if flash else _CUDAEfficientKernel()
    return None


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)  # float32, or float64 for float64 inputs


def _merge(a_out: torch.Tensor, a_lse: torch.Tensor, b_out: torch.Tensor, b_lse: torch.Tensor) -> torch.Tensor:
    """Softmax attention over the union of two key blocks, from each block's output and log-sum-exp.

    The blocks' weights are sigmoid(a_lse - b_lse) and its complement; one lerp, in float32 at least.
    """
    acc = _accumulation_dtype(a_out.dtype)
    a_weight = torch.sigmoid(a_lse.to(acc) - b_lse.to(acc)).unsqueeze(-1)
    return torch.lerp(b_out.to(acc), a_out.to(acc), a_weight)


class _MergedPISA(torch.autograd.Function):
    """PISA's attention core on per-head q, k, v of shape (b, f, T, heads, d), reference last; returns the same shape.

    Three fused attentions compute every score PISA needs once (49 T^2 per head, not the pairings' 64 T^2):
      S: every frame over its own keys (batch f): the frames' self blocks and the reference's, shared by all pairings;
      R: the generated frames' queries over the reference's keys (g*T rows);
      X: the reference's queries over each generated frame's keys (batch g).
    Frame i's output merges S_i with R_i; pairing i's reference row merges X_i with S_ref; the reference's
    output is the mean of the g pairings. Backward runs each kernel's own backward per block with the merged
    outputs and normalisers, as flash attention does over key blocks. The shared block S_ref folds all g
    pairings into one call: its probabilities in pairing i are its local ones times w_i = exp(lse_ref - lse_i),
    and every pairing gets the same grad dO_ref / g (the reference's output is their mean), so one call
    with grad sum_i w_i dO_ref / g and output sum_i w_i O_i / sum_i w_i gives exactly the sum of the
    pairings' gradients (its D term included). Videos run one at a time, so every kernel input is a view of q, k or v.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: _AttentionKernel, need_grad: bool) -> torch.Tensor:
        # The CPU kernel silently misreads a last dimension with a stride other than 1.
        q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
        out = torch.empty_like(q, memory_format=torch.contiguous_format)  # b, f, T, h, d
        pairs = torch.empty_like(out[:, :-1])
        # One video at a time: every kernel input is then a view of q, k, v, whatever the batch.
        videos = [_video_forward(*(x[n : n + 1] for x in (q, k, v, out, pairs)), kernel, need_grad) for n in range(q.shape[0])]
        if need_grad:
            ctx.kernel, ctx.aux = kernel, [aux for _, aux in videos]  # not the partial outputs: backward needs none
            stats = [torch.cat(parts) for parts in zip(*(stat for stat, _ in videos))]
            ctx.save_for_backward(q, k, v, out, pairs, *stats)
        return out

    @staticmethod
    @once_differentiable  # the kernels' backward ops have no derivative of their own
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        q, k, v, out, pairs, *stats = ctx.saved_tensors
        grad = grad.to(q.dtype)
        dq, dk, dv = (torch.empty_like(out) for _ in range(3))  # b, f, T, h, d
        for n, aux in enumerate(ctx.aux):
            video = (x[n : n + 1] for x in (grad, q, k, v, out, pairs, *stats, dq, dk, dv))
            _video_backward(*video, ctx.kernel, aux)
        return dq, dk, dv, None, None


def _video_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    pairs: torch.Tensor,
    kernel: _AttentionKernel,
    need_grad: bool,
) -> tuple[tuple[torch.Tensor, ...], tuple]:
    """`_MergedPISA.forward` for one video (b = 1): fills `out` and `pairs`, returns what backward needs."""
    b, f, t, h, d = q.shape
    g = f - 1
    part_s = kernel.forward(*(_rows(x, b * f, t) for x in (q, k, v)))
    part_r = kernel.forward(_rows(q[:, :g], b, g * t), _rows(k[:, g], b, t), _rows(v[:, g], b, t))
    part_x = kernel.forward(_rows(q[:, g:].expand(b, g, t, h, d), b * g, t), _rows(k[:, :g], b * g, t), _rows(v[:, :g], b * g, t))
    # Kernel outputs are (batch, heads, rows, d), whatever their strides: split the batch or rows into frames.
    out_s, lse_s = part_s.out.view(b, f, h, t, d), part_s.lse.view(b, f, h, t)
    out_r, lse_r = part_r.out.view(b, h, g, t, d).transpose(1, 2), part_r.lse.view(b, h, g, t).transpose(1, 2)
    out_x, lse_x = part_x.out.view(b, g, h, t, d), part_x.lse.view(b, g, h, t)
    _merge_into(out[:, :g], out_s[:, :g], lse_s[:, :g], out_r, lse_r)
    _merge_into(pairs, out_x, lse_x, out_s[:, g:], lse_s[:, g:])
    out[:, g] = pairs.mean(dim=1, dtype=_accumulation_dtype(q.dtype))
    if not need_grad:
        return (), ()
    # The merged normalisers, and the shared block's weight in each pairing.
    acc = _accumulation_dtype(q.dtype)
    ref_lse = lse_s[:, g:].to(acc)
    frames_lse = torch.logaddexp(lse_s[:, :g].to(acc), lse_r.to(acc))
    pairs_lse = torch.logaddexp(lse_x.to(acc), ref_lse)
    return (frames_lse, pairs_lse, ref_lse), (part_s.aux, part_r.aux, part_x.aux)


def _video_backward(
    grad: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    pairs: torch.Tensor,
    frames_lse: torch.Tensor,
    pairs_lse: torch.Tensor,
    ref_lse: torch.Tensor,
    dq: torch.Tensor,
    dk: torch.Tensor,
    dv: torch.Tensor,
    kernel: _AttentionKernel,
    aux: tuple,
) -> None:
    """`_MergedPISA.backward` for one video (b = 1): fills dq, dk, dv."""
    aux_s, aux_r, aux_x = aux
    b, f, t, h, d = q.shape
    g = f - 1
    acc = _accumulation_dtype(q.dtype)

    def heads_view(x: torch.Tensor) -> torch.Tensor:  # a (b, n, T, h, d) slice seen as (b, n, h, T, d), writable
        return x.transpose(2, 3)

    # S, generated frames' rows: merged outputs and normalisers of the frames.
    grads = kernel.backward(
        _rows(grad[:, :g], b * g, t),
        *(_rows(x[:, :g], b * g, t) for x in (q, k, v)),
        _Partial(_rows(out[:, :g], b * g, t), None, aux_s),
        frames_lse.reshape(b * g, h, t),
    )
    for buffer, block in zip((dq, dk, dv), grads):
        heads_view(buffer[:, :g]).copy_(block.view(b, g, h, t, d))
    del grads  # free each call's gradients before the next call allocates its own
    # R: the frames' rows over the reference's keys, same outputs and normalisers.
    grads = kernel.backward(
        _rows(grad[:, :g], b, g * t),
        _rows(q[:, :g], b, g * t),
        _rows(k[:, g], b, t),
        _rows(v[:, g], b, t),
        _Partial(_rows(out[:, :g], b, g * t), None, aux_r),
        frames_lse.transpose(1, 2).reshape(b, h, g * t),
    )
    heads_view(dq[:, :g]).add_(grads[0].view(b, h, g, t, d).transpose(1, 2))
    dk[:, g].transpose(1, 2).copy_(grads[1])
    dv[:, g].transpose(1, 2).copy_(grads[2])
    del grads
    # X: pairing i's reference rows over frame i's keys; each pairing's output is 1/g of the reference's.
    grads = kernel.backward(
        _rows((grad[:, g:] / g).expand(b, g, t, h, d), b * g, t),
        _rows(q[:, g:].expand(b, g, t, h, d), b * g, t),
        _rows(k[:, :g], b * g, t),
        _rows(v[:, :g], b * g, t),
        _Partial(_rows(pairs, b * g, t), None, aux_x),
        pairs_lse.reshape(b * g, h, t),
    )
    dq[:, g].transpose(1, 2).copy_(grads[0].view(b, g, h, t, d).sum(dim=1))
    heads_view(dk[:, :g]).add_(grads[1].view(b, g, h, t, d))
    heads_view(dv[:, :g]).add_(grads[2].view(b, g, h, t, d))
    del grads
    # S, the reference's rows: the g pairings folded into one call (see `_MergedPISA`).
    # In log space: the weights w_i = exp(ref_lse - pairs_lse_i) can all underflow, and 0/0 would be NaN.
    log_w = ref_lse - pairs_lse  # b, g, h, T; <= 0
    total = log_w.logsumexp(dim=1).exp()  # b, h, T; 0 in the limit, which is the right gradient
    ref_grad = (total / g).unsqueeze(-1) * heads_view(grad[:, g:]).squeeze(1).to(acc)
    ref_out = (torch.softmax(log_w, dim=1).unsqueeze(-1) * heads_view(pairs).to(acc)).sum(dim=1)
    grads = kernel.backward(
        ref_grad.to(q.dtype),
        *(_rows(x[:, g], b, t) for x in (q, k, v)),
        _Partial(ref_out.to(q.dtype), None, aux_s),
        ref_lse.squeeze(1).contiguous(),
    )
    for buffer, block in zip((dq, dk, dv), grads):
        buffer[:, g].transpose(1, 2).add_(block)


def _rows(x: torch.Tensor, batch: int, rows: int) -> torch.Tensor:
    """Tokens-first (b, n, T, heads, d) -> the kernels' (batch, heads, rows, d): a view where strides allow."""
    return x.reshape(batch, rows, *x.shape[-2:]).transpose(1, 2)


def _merge_into(dest: torch.Tensor, a_out: torch.Tensor, a_lse: torch.Tensor, b_out: torch.Tensor, b_lse: torch.Tensor) -> None:
    """Write softmax attention over the union of two key blocks into `dest` (b, n, T, h, d), from each block's
    output (b, n, h, T, d) and log-sum-exp (b, n, h, T).

    The blocks' weights are sigmoid(a_lse - b_lse) and its complement: one lerp, in float32 at least.
    """
    acc = _accumulation_dtype(a_out.dtype)
    a_weight = torch.sigmoid(a_lse.to(acc) - b_lse.to(acc)).unsqueeze(-1)
    if dest.dtype == acc:
        torch.lerp(b_out.expand_as(a_out), a_out, a_weight, out=dest.transpose(2, 3))
    else:
        dest.transpose(2, 3).copy_(torch.lerp(b_out.to(acc), a_out.to(acc), a_weight))


def _explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention and log-sum-exp with plain differentiable ops, in float32 at least (materialises the scores)."""
    acc = _accumulation_dtype(q.dtype)
    scores = q.to(acc) @ k.to(acc).transpose(-1, -2) * q.shape[-1] ** -0.5
    lse = torch.logsumexp(scores, dim=-1)
    return torch.exp(scores - lse.unsqueeze(-1)) @ v.to(acc), lse


def _merged_pisa_explicit(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same two blocks and merge as `_MergedPISA`, for devices without a fused kernel; autograd differentiates it."""
    b, f, t, h, d = q.shape
    g = f - 1
    q, k, v = (x.permute(0, 1, 3, 2, 4) for x in (q, k, v))  # b, f, h, T, d
    out_a, lse_a = _explicit_attention(torch.cat([q[:, :g], q[:, g:].expand(b, g, h, t, d)], dim=3), k[:, :g], v[:, :g])
    out_b, lse_b = _explicit_attention(q, k[:, g:], v[:, g:])  # broadcast over the f query frames
    frames = _merge(out_a[..., :t, :], lse_a[..., :t], out_b[:, :g], lse_b[:, :g])
    pairs = _merge(out_a[..., t:, :], lse_a[..., t:], out_b[:, g:], lse_b[:, g:])
    out = torch.cat([frames, pairs.mean(dim=1, keepdim=True)], dim=1)
    return out.permute(0, 1, 3, 2, 4).to(q.dtype)


class PISAAttnProcessor:
    """PISA for one spatial `attn1` layer; input `(batch * num_frames, tokens, channels)`, reference last.

    Equal to the definition (16 attentions over [frame_i ; reference], the reference's output the mean
    of its 16 results) without repeating the reference's attention to itself in every pairing and
    without building the pairings: two fused attentions whose partial softmaxes are merged by their
    log-sum-exp (see `_MergedPISA`), 49 T^2 score entries per head instead of the pairings' 64 T^2.
    Projections run once on all frames, and the output projection runs on the reference after
    averaging, which is exact because it is affine.

    Kernels: on the CPU aten's flash attention (every float dtype); on CUDA FlashAttention-2 for
    float16/bfloat16 and memory-efficient attention for float32; elsewhere, or with
    `kernel="explicit"`, plain ops that materialise the score blocks.

    Args:
        num_frames: Frames per video including the reference (17 in the paper).
        kernel: `"auto"` (the fused kernels above) or `"explicit"`.
    """

    def __init__(self, num_frames: int = 17, kernel: Literal["auto", "explicit"] = "auto") -> None:
        if num_frames < 2:
            raise ValueError(f"`num_frames` must count the generated frames plus the reference (>= 2), got {num_frames}.")
        if kernel not in ("auto", "explicit"):
            raise ValueError(f"`kernel` must be 'auto' or 'explicit', got {kernel!r}.")
        self.num_frames = num_frames
        self.kernel = kernel

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        _check_self_attention(hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        x = _frames_view(hidden_states, self.num_frames, "hidden_states")  # b, f, T, C
        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)  # b, f, T, inner
        heads = attn.heads
        q, k, v = (t.unflatten(-1, (heads, t.shape[-1] // heads)) for t in (q, k, v))  # b, f, T, heads, d
        if attn.norm_q is not None:  # per head over head_dim, as the stock processors apply it
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        kernel = None if self.kernel == "explicit" else _fused_kernel(q)
        if kernel is None:
            out = _merged_pisa_explicit(q, k, v)
        else:  # grad mode is off inside `forward`: say here whether backward will come
            need_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v))
            out = _MergedPISA.apply(q, k, v, kernel, need_grad)
        out = attn.to_out[1](attn.to_out[0](out.flatten(-2).flatten(0, 1)))  # (b f), T, C
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class PairedPISAAttnProcessor:
    """PISA as 16 explicit (frame, reference) pairings; the previous implementation, kept as a reference.

    Input `(batch * num_frames, tokens, channels)`, reference last. Projections run once on all
    frames (the naive form projects the reference once per generated frame), then one batched
    attention covers all 16 (frame, reference) pairings, and the output projection runs on the
    reference after averaging, which is exact because it is affine.

    Args:
        num_frames: Frames per video including the reference (17 in the paper).
    """

    def __init__(self, num_frames: int = 17) -> None:
        if num_frames < 2:
            raise ValueError(f"`num_frames` must count the generated frames plus the reference (>= 2), got {num_frames}.")
        self.num_frames = num_frames

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        _check_self_attention(hidden_states, encoder_hidden_states, attention_mask)
        residual = hidden_states
        x = _frames_view(hidden_states, self.num_frames, "hidden_states")  # b, f, T, C
        batch, frames, tokens, _ = x.shape
        generated = frames - 1

        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)  # b, f, T, inner
        head_dim = q.shape[-1] // attn.heads

        def pair_with_reference(t: torch.Tensor) -> torch.Tensor:
            # b, f, T, inner -> (b g), heads, 2T, head_dim: frame i's tokens, then the reference's
            paired = torch.cat([t[:, :generated], t[:, generated:].expand(-1, generated, -1, -1)], dim=2)
            return paired.reshape(batch * generated, 2 * tokens, attn.heads, head_dim).transpose(1, 2)

        q, k, v = pair_with_reference(q), pair_with_reference(k), pair_with_reference(v)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        y = F.scaled_dot_product_attention(q, k, v)  # (b g), heads, 2T, head_dim
        y = y.transpose(1, 2).reshape(batch, generated, 2 * tokens, attn.heads * head_dim)

        video_out = y[:, :, :tokens]  # b, g, T, inner
        reference_out = y[:, :, tokens:].mean(dim=1, keepdim=True)  # b, 1, T, inner
        out = torch.cat([video_out, reference_out], dim=1).flatten(0, 1)  # (b f), T, inner
        out = attn.to_out[1](attn.to_out[0](out))

        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class VideoFramesCrossAttnProcessor:
    """Text cross-attention for the video frames only; the reference gets a zero update.

    Used when `ref_in_cross_attn` is False. A zero `attn2` output makes the transformer block's
    residual an identity for the reference, which is what "passes through unchanged" means here.
    """

    def __init__(self, num_frames: int = 17) -> None:
        if num_frames < 2:
            raise ValueError(f"`num_frames` must count the generated frames plus the reference (>= 2), got {num_frames}.")
        self.num_frames = num_frames
        self._attention = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or attention_mask is not None:
            raise ValueError("VideoFramesCrossAttnProcessor needs `encoder_hidden_states` and no `attention_mask`.")
        x = _frames_view(hidden_states, self.num_frames, "hidden_states")
        text = _frames_view(encoder_hidden_states, self.num_frames, "encoder_hidden_states")
        video_out = self._attention(attn, x[:, :-1].flatten(0, 1), text[:, :-1].flatten(0, 1))
        video_out = video_out.unflatten(0, (x.shape[0], self.num_frames - 1))
        reference_out = torch.zeros_like(video_out[:, :1])
        return torch.cat([video_out, reference_out], dim=1).flatten(0, 1)


class VideoFramesOnlyMotionHook(ModelHook):
    """Runs a motion module on the video frames alone and returns the reference frame unchanged.

    Used when `ref_in_motion` is False. The module's GroupNorm statistics and temporal attention
    then never see the reference, exactly as if the UNet were given 16 frames.
    """

    def __init__(self, num_frames: int = 17) -> None:
        super().__init__()
        self.num_frames = num_frames
        self._signature = inspect.signature(AnimateDiffTransformer3D.forward)

    def new_forward(self, module: torch.nn.Module, *args: object, **kwargs: object) -> torch.Tensor:
        call = self._signature.bind(module, *args, **kwargs)
        call.apply_defaults()
        arguments = dict(call.arguments)
        del arguments["self"]
        if arguments["num_frames"] != self.num_frames:
            raise ValueError(
                f"Motion module got num_frames={arguments['num_frames']}, but PISA was installed for "
                f"{self.num_frames} (generated frames + reference)."
            )
        x = _frames_view(arguments["hidden_states"], self.num_frames, "hidden_states")
        arguments.update(hidden_states=x[:, :-1].flatten(0, 1), num_frames=self.num_frames - 1)
        video_out = self.fn_ref.original_forward(**arguments)
        video_out = video_out.unflatten(0, (x.shape[0], self.num_frames - 1))
        return torch.cat([video_out, x[:, -1:]], dim=1).flatten(0, 1)


def is_pisa_layer(name: str) -> bool:
    """True for processor keys / parameter names of spatial self-attention (`attn1`) layers."""
    match = _SPATIAL_ATTENTION.search(name)
    return bool(match) and match.group(2) == "attn1"


def _is_spatial_cross_attention(name: str) -> bool:
    match = _SPATIAL_ATTENTION.search(name)
    return bool(match) and match.group(2) == "attn2"


PISA_IMPLEMENTATIONS = {"merged": PISAAttnProcessor, "paired": PairedPISAAttnProcessor}


def install_pisa(
    unet: torch.nn.Module,
    switches: PISASwitches = PISASwitches(),
    num_frames: int = 17,
    implementation: Literal["merged", "paired"] = "merged",
) -> list[str]:
    """Put PISA on every spatial self-attention layer of a `UNetMotionModel` and apply the switches.

    Calling it again with other switches replaces the previous installation.

    Args:
        unet: A diffusers `UNetMotionModel`.
        switches: Ablation switches; defaults are the final model.
        num_frames: Frames per video including the reference (17 in the paper).
        implementation: `"merged"` (`PISAAttnProcessor`, the default) or `"paired"` (the previous
            `PairedPISAAttnProcessor`, for comparison). Both compute the same function.

    Returns:
        The processor keys of the layers that got PISA (16 on the SD1.5 UNet).
    """
    if implementation not in PISA_IMPLEMENTATIONS:
        raise ValueError(f"`implementation` must be one of {sorted(PISA_IMPLEMENTATIONS)}, got {implementation!r}.")
    processors = getattr(unet, "attn_processors", {})
    pisa_layers = [name for name in processors if is_pisa_layer(name)]
    if not pisa_layers:
        raise ValueError(
            f"`unet` ({type(unet).__name__}) has no spatial self-attention layers "
            "(`...attentions.N.transformer_blocks.M.attn1`); PISA needs an AnimateDiff `UNetMotionModel`."
        )
    for name, module in unet.named_modules():
        if is_pisa_layer(name + ".") and isinstance(module, Attention):
            if module.group_norm is not None or module.spatial_norm is not None:
                raise ValueError(f"PISA does not support group/spatial norm inside attention layer `{name}`.")

    new_processors = {}
    for name, processor in processors.items():
        if is_pisa_layer(name):
            new_processors[name] = PISA_IMPLEMENTATIONS[implementation](num_frames)
        elif _is_spatial_cross_attention(name):
            new_processors[name] = AttnProcessor2_0() if switches.ref_in_cross_attn else VideoFramesCrossAttnProcessor(num_frames)
        else:
            new_processors[name] = processor
    unet.set_attn_processor(new_processors)

    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            registry = HookRegistry.check_if_exists_or_initialize(module)
            if registry.get_hook(_MOTION_HOOK) is not None:
                registry.remove_hook(_MOTION_HOOK, recurse=False)
            if not switches.ref_in_motion:
                registry.register_hook(VideoFramesOnlyMotionHook(num_frames), _MOTION_HOOK)
    return pisa_layers
