"""The arithmetic of pyliverlesionseg's two Keras models in plain NumPy (float64, channels last, kernels as the HDF5
files store them), written layer by layer as the Keras graph runs, with nothing shared with the PyTorch port
(lib.model.generalized_unet). `verify` runs both on the same input and gives each convolution's largest difference:
the check that the port computes what the original computes."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from .generalized_unet import GeneralizedUNet


class KerasWeights:
    def __init__(self, path: Path) -> None:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            self.convs = {n: (np.asarray(group[n][n]["kernel:0"], np.float64), np.asarray(group[n][n]["bias:0"],
                                                                                          np.float64))
                          for n in group if n.startswith("conv3d_")}
        self.outputs: dict[str, np.ndarray] = {}

    def conv(self, x: np.ndarray, k: int, padding: str) -> np.ndarray:
        """Conv3D of layer conv3d_k: a cross-correlation, 'same' padding with zeros, (k - 1) / 2 each side."""
        name = f"conv3d_{k}"
        kernel, bias = self.convs[name]
        size = kernel.shape[:3]
        if padding == "same":
            x = np.pad(x, [((s - 1) // 2, (s - 1) // 2) for s in size] + [(0, 0)])
        out_shape = [n - s + 1 for n, s in zip(x.shape[:3], size)]
        out = np.zeros(out_shape + [kernel.shape[4]])
        for a in range(size[0]):
            for b in range(size[1]):
                for c in range(size[2]):
                    out += x[a:a + out_shape[0], b:b + out_shape[1], c:c + out_shape[2]] @ kernel[a, b, c]
        out += bias
        self.outputs[name] = out
        return out


def norm(x: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=(0, 1, 2), keepdims=True)
    return (x - mean) / (x.std(axis=(0, 1, 2), keepdims=True) + 1e-7)


def act(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.01 * x)


def na(x: np.ndarray) -> np.ndarray:
    return act(norm(x))


def max_pool(x: np.ndarray, s: int) -> np.ndarray:
    n = [d // s for d in x.shape[:3]]
    x = x[: n[0] * s, : n[1] * s, : n[2] * s]
    return x.reshape(n[0], s, n[1], s, n[2], s, -1).max(axis=(1, 3, 5))


def up_copy(x: np.ndarray, s: int) -> np.ndarray:
    return x.repeat(s, 0).repeat(s, 1).repeat(s, 2)


def up_linear(x: np.ndarray, s: int) -> np.ndarray:
    """UpSampling3D(s) then AveragePooling3D(s, strides=1, valid)."""
    x = up_copy(x, s)
    for axis in range(3):
        c = np.cumsum(np.insert(x, 0, 0, axis=axis), axis=axis)
        x = (np.take(c, range(s, c.shape[axis]), axis=axis) - np.take(c, range(0, c.shape[axis] - s), axis=axis)) / s
    return x


def crop(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    c = [int((a - b) / 2) for a, b in zip(x.shape[:3], ref.shape[:3])]
    return x[c[0]: x.shape[0] - c[0], c[1]: x.shape[1] - c[1], c[2]: x.shape[2] - c[2]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def liver_model(w: KerasWeights, x: np.ndarray) -> np.ndarray:
    """The liver network: same padding, pools of 3, linear upsampling, no residual connections."""
    p = "same"
    l1 = w.conv(na(w.conv(x, 1, p)), 2, p)
    l2 = w.conv(na(w.conv(na(max_pool(l1, 3)), 3, p)), 4, p)
    l3 = w.conv(na(w.conv(na(max_pool(l2, 3)), 5, p)), 6, p)
    l4 = w.conv(na(w.conv(na(max_pool(l3, 3)), 7, p)), 8, p)
    u = up_linear(l4, 3)
    u = w.conv(na(w.conv(na(np.concatenate([crop(l3, u), u], -1)), 9, p)), 10, p)
    u = up_linear(u, 3)
    u = w.conv(na(w.conv(na(np.concatenate([crop(l2, u), u], -1)), 11, p)), 12, p)
    u = up_linear(u, 3)
    u = w.conv(na(w.conv(na(np.concatenate([crop(l1, u), u], -1)), 13, p)), 14, p)
    return sigmoid(w.conv(na(u), 15, p))


def lesion_model(w: KerasWeights, x: np.ndarray) -> np.ndarray:
    """The lesion network: valid padding, pools of 2, copy upsampling, residual connections (1x1x1 projections
    where the channels change)."""
    p = "valid"
    a = w.conv(na(w.conv(x, 1, p)), 2, p)
    l1 = a + w.conv(crop(x, a), 3, p)
    b0 = max_pool(l1, 2)
    b = w.conv(na(w.conv(na(b0), 4, p)), 5, p)
    l2 = b + w.conv(crop(b0, b), 6, p)
    c0 = max_pool(l2, 2)
    c = w.conv(na(w.conv(na(c0), 7, p)), 8, p)
    l3 = c + w.conv(crop(c0, c), 9, p)
    d0 = max_pool(l3, 2)
    d = w.conv(na(w.conv(na(d0), 10, p)), 11, p)
    l4 = d + crop(d0, d)
    u = up_copy(l4, 2)
    u0 = np.concatenate([crop(l3, u), u], -1)
    u = w.conv(na(w.conv(na(u0), 12, p)), 13, p)
    u = u + w.conv(crop(u0, u), 14, p)
    u = up_copy(u, 2)
    u0 = np.concatenate([crop(l2, u), u], -1)
    u = w.conv(na(w.conv(na(u0), 15, p)), 16, p)
    u = u + w.conv(crop(u0, u), 17, p)
    u = up_copy(u, 2)
    u0 = np.concatenate([crop(l1, u), u], -1)
    u = w.conv(na(w.conv(na(u0), 18, p)), 19, p)
    u = u + w.conv(crop(u0, u), 20, p)
    return sigmoid(w.conv(na(u), 21, p))


MODELS = {"liver": liver_model, "lesion": lesion_model}


def verify(network: GeneralizedUNet, name: str, hdf5: Path, x: np.ndarray) -> dict[str, float]:
    """Each convolution's largest absolute difference between the port and the NumPy reference on input x
    (X, Y, Z), and the output's ("output"); both in float64, so that what differs is the arithmetic, not its
    rounding (the port runs in float32 or bfloat16 in use). The network is left in float32."""
    weights = KerasWeights(hdf5)
    expected = MODELS[name](weights, x[..., None].astype(np.float64))[..., 0]
    got: dict[int, np.ndarray] = {}
    convs = network.keras_order()
    hooks = [conv.register_forward_hook(lambda _m, _i, out, k=k: got.__setitem__(k, out.detach()))
             for k, conv in enumerate(convs, start=1)]
    try:
        with torch.no_grad():
            output = network.double()(torch.from_numpy(x.astype(np.float64))[None, None])[0, 0].numpy()
    finally:
        network.float()
        for h in hooks:
            h.remove()
    differences = {f"conv3d_{k}": float(np.abs(got[k][0].permute(1, 2, 3, 0).numpy() - weights.outputs[f"conv3d_{k}"]
                                               ).max()) for k in range(1, len(convs) + 1)}
    differences["output"] = float(np.abs(output - expected).max())
    return differences
