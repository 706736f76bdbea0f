"""True fp32 matmuls in PyTorch (no TF32), for the fp32 baselines of the GPU
benchmarks, which compare against our backend's CUBLAS_COMPUTE_32F GEMMs.

torch >= 2.9 has a new switch (torch.backends.cuda.matmul.fp32_precision) and
raises inside torch.compile when the legacy one (allow_tf32,
set_float32_matmul_precision) was also set, so only one of the two is used:
the new one when it exists.
"""


def disable_tf32(torch):
    """Makes fp32 matmuls and convolutions exact fp32; returns a description
    of the setting as read back."""
    matmul = torch.backends.cuda.matmul
    try:  # old versions raise AssertionError, not AttributeError, for unknown names
        getattr(matmul, "fp32_precision")
        has_new_api = True
    except (AttributeError, AssertionError):
        has_new_api = False
    if has_new_api:
        matmul.fp32_precision = "ieee"
        if hasattr(torch.backends.cudnn, "fp32_precision"):
            torch.backends.cudnn.fp32_precision = "ieee"
        return f"fp32_precision={matmul.fp32_precision}"
    matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return f"allow_tf32={matmul.allow_tf32}"
